//! Whether the decision steps' spans (`validate`, `cache`, `signature`, `route`, `token`, ...)
//! are made at all.
//!
//! A `tracing` span callsite is cheap when no subscriber wants it, but not free: with the
//! gateway's OpenTelemetry layer installed, every step span of an *unsampled* request asks the
//! subscriber, which then refuses it (a dozen calls per request, each through the layer stack and
//! its thread-local filter state). The gateway knows, at its front door, whether a request is
//! sampled; [`traced`] says so to this thread for as long as the request's decision is polled, and
//! [`step_span!`](crate::step_span) makes a span only then. The question costs one relaxed load
//! and, in a gateway with telemetry on, one thread-local read.
//!
//! A library user who never calls [`set_step_spans`] keeps plain `tracing` behaviour, the
//! subscriber deciding for every step span, with one difference: the spans are at DEBUG, not INFO.
//! A service logging at INFO (`tracing_subscriber::fmt().init()`, the usual set-up) would
//! otherwise make, format and close two to four of them per request inside its own request span:
//! about 16,600 instructions per uncached request of `trustgate-service` under callgrind, as much
//! again as everything else trustgate does there around the RSA verify. The gateway keeps them at INFO: its OpenTelemetry
//! layer takes trustgate's spans whatever the log level, and a DEBUG span there would raise the
//! process's maximum level for every `debug!` in hyper and tokio.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

/// Which step spans a process makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StepSpans {
    /// Every one, at DEBUG, offered to the subscriber, which decides (the default).
    Always = 0,
    /// Only inside [`traced`] futures, at INFO: a gateway with telemetry on.
    InTracedScopes = 1,
    /// None: a process that exports no traces, whatever its log level.
    Never = 2,
}

static POLICY: AtomicU8 = AtomicU8::new(StepSpans::Always as u8);

thread_local! {
    /// Whether this thread is polling a future under [`traced`].
    static IN_TRACED: Cell<bool> = const { Cell::new(false) };
}

/// Sets the process's [`StepSpans`]. For a process's start, before requests.
pub fn set_step_spans(policy: StepSpans) {
    POLICY.store(policy as u8, Ordering::Relaxed);
}

/// Whether a step span made here would be wanted, and at which level.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepLevel {
    /// Not wanted: `Span::none()`.
    Off,
    /// A gateway's sampled request.
    Info,
    /// A library's step, for the subscriber to decide.
    Debug,
}

/// The [`StepLevel`] of a step span made here. Used by [`step_span!`](crate::step_span).
#[doc(hidden)]
#[inline]
pub fn step_span_level() -> StepLevel {
    const ALWAYS: u8 = StepSpans::Always as u8;
    const IN_TRACED_SCOPES: u8 = StepSpans::InTracedScopes as u8;
    match POLICY.load(Ordering::Relaxed) {
        ALWAYS => StepLevel::Debug,
        IN_TRACED_SCOPES if IN_TRACED.with(Cell::get) => StepLevel::Info,
        _ => StepLevel::Off,
    }
}

/// Polls `future` inside `span`, with step spans wanted on this thread (see the module's
/// documentation): a sampled request's decision, under its root span. One wrapper for both, as
/// `tracing::Instrument` would be a second; it borrows the future pinned where it is, so that the
/// caller's own future holds one copy of it, not two.
pub fn traced<'a, F: Future>(span: &'a tracing::Span, future: Pin<&'a mut F>) -> Traced<'a, F> {
    Traced { span, future }
}

/// The future [`traced`] returns.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Traced<'a, F> {
    span: &'a tracing::Span,
    future: Pin<&'a mut F>,
}

impl<F: Future> Future for Traced<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // Unpin: a reference and a pinned reference.
        let this = self.get_mut();
        let _scope = TracedScope::enter();
        let _entered = this.span.enter();
        this.future.as_mut().poll(cx)
    }
}

/// Sets the thread's flag for one poll, and puts back what was there (a nested [`traced`], or a
/// panic unwinding through the poll, leaves the thread as it found it).
struct TracedScope {
    was: bool,
}

impl TracedScope {
    fn enter() -> Self {
        Self {
            was: IN_TRACED.with(|flag| flag.replace(true)),
        }
    }
}

impl Drop for TracedScope {
    fn drop(&mut self) {
        IN_TRACED.with(|flag| flag.set(self.was));
    }
}

/// `span`, or `Span::none()` when no subscriber wants it.
///
/// A disabled span is not always inert: when any crate of the binary turns on `tracing`'s `log`
/// feature (cargo unifies features, so one dependency is enough), a disabled span keeps its
/// metadata, and every `record` on it looks the field up by name and offers the value to `log`,
/// entering and leaving it too. On the uncached path of `trustgate-service` that was about
/// 2,100 instructions per request (callgrind), spent on spans nothing consumed. `Span::none()` makes each of
/// those calls a branch.
#[doc(hidden)]
#[inline]
pub fn unless_disabled(span: tracing::Span) -> tracing::Span {
    if span.is_disabled() {
        tracing::Span::none()
    } else {
        span
    }
}

/// A span for a decision step, at the level [`step_span_level`] gives, made only when some
/// subscriber takes that level at all (otherwise `Span::none()`, without asking the subscriber,
/// and without the disabled span that `tracing`'s `log` feature would fill in), and dropped at
/// once when the subscriber does not want it ([`unless_disabled`]).
#[macro_export]
macro_rules! step_span {
    ($($arg:tt)*) => {
        match $crate::steps::step_span_level() {
            $crate::steps::StepLevel::Info
                if ::tracing::level_enabled!(::tracing::Level::INFO) =>
            {
                $crate::steps::unless_disabled(::tracing::info_span!($($arg)*))
            }
            $crate::steps::StepLevel::Debug
                if ::tracing::level_enabled!(::tracing::Level::DEBUG) =>
            {
                $crate::steps::unless_disabled(::tracing::debug_span!($($arg)*))
            }
            _ => ::tracing::Span::none(),
        }
    };
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    // One test, as it sets the process's policy (no other test of this crate depends on it).
    #[test]
    fn step_spans_follow_the_policy_and_traced_scopes() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let level_inside = |runtime: &tokio::runtime::Runtime| {
            runtime.block_on(async {
                let decision = std::pin::pin!(async {
                    let before = step_span_level();
                    // Still wanted after the task was suspended and polled again.
                    tokio::task::yield_now().await;
                    (before, step_span_level())
                });
                let seen = traced(&tracing::Span::none(), decision).await;
                assert!(!IN_TRACED.with(Cell::get), "the flag outlived the scope");
                seen
            })
        };
        set_step_spans(StepSpans::InTracedScopes);
        assert_eq!(step_span_level(), StepLevel::Off);
        assert_eq!(level_inside(&runtime), (StepLevel::Info, StepLevel::Info));
        assert_eq!(step_span_level(), StepLevel::Off);
        // A gateway's sampled request makes its step spans at INFO.
        tracing::subscriber::with_default(Wants("wanted", Level::INFO), || {
            let span = runtime.block_on(async {
                let step = std::pin::pin!(async { crate::step_span!("wanted") });
                traced(&tracing::Span::none(), step).await
            });
            assert_eq!(span.metadata().map(|m| *m.level()), Some(Level::INFO));
        });
        set_step_spans(StepSpans::Never);
        assert_eq!(level_inside(&runtime), (StepLevel::Off, StepLevel::Off));
        set_step_spans(StepSpans::Always);
        assert_eq!(step_span_level(), StepLevel::Debug);

        // Wanted or nothing: a span the subscriber refuses (or made with no subscriber) is
        // `Span::none()`, never a disabled span holding metadata for `record` to search.
        assert!(crate::step_span!("wanted", trustgate.reason = tracing::field::Empty).is_none());
        tracing::subscriber::with_default(Wants("wanted", Level::TRACE), || {
            let wanted = crate::step_span!("wanted", trustgate.reason = tracing::field::Empty);
            assert_eq!(wanted.metadata().map(|m| *m.level()), Some(Level::DEBUG));
            let refused = crate::step_span!("refused", trustgate.reason = tracing::field::Empty);
            assert!(refused.is_none());
        });
        // A library's steps are DEBUG detail: an application logging at INFO makes none.
        tracing::subscriber::with_default(Wants("wanted", Level::INFO), || {
            assert!(crate::step_span!("wanted").is_none());
        });
    }

    /// A subscriber that takes the spans of one name, up to a level, and nothing else.
    struct Wants(&'static str, Level);

    impl tracing::Subscriber for Wants {
        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(self.1.into())
        }
        fn register_callsite(
            &self,
            meta: &'static tracing::Metadata<'static>,
        ) -> tracing::subscriber::Interest {
            if self.enabled(meta) {
                tracing::subscriber::Interest::always()
            } else {
                tracing::subscriber::Interest::never()
            }
        }
        fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
            meta.name() == self.0 && *meta.level() <= self.1
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
}
