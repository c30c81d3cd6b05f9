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
//! A library user who never calls [`set_step_spans`] keeps plain `tracing` behaviour: the
//! subscriber decides for every step span.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};

/// Which step spans a process makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StepSpans {
    /// Every one, offered to the subscriber, which decides (the default).
    Always = 0,
    /// Only inside [`traced`] futures: a gateway with telemetry on.
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

/// Whether a step span made here would be wanted. Used by [`step_span!`](crate::step_span).
#[doc(hidden)]
#[inline]
pub fn step_spans_wanted() -> bool {
    const ALWAYS: u8 = StepSpans::Always as u8;
    const IN_TRACED_SCOPES: u8 = StepSpans::InTracedScopes as u8;
    match POLICY.load(Ordering::Relaxed) {
        ALWAYS => true,
        IN_TRACED_SCOPES => IN_TRACED.with(Cell::get),
        _ => false,
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
/// 3,000 instructions per request, spent on spans nothing consumed. `Span::none()` makes each of
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

/// `tracing::info_span!` for a decision step, made only when [`step_spans_wanted`] and some
/// subscriber takes INFO at all (otherwise `Span::none()`, without asking the subscriber, and
/// without the disabled span that `tracing`'s `log` feature would fill in), and dropped at once
/// when the subscriber does not want it ([`unless_disabled`]).
#[macro_export]
macro_rules! step_span {
    ($($arg:tt)*) => {
        if $crate::steps::step_spans_wanted() && ::tracing::level_enabled!(::tracing::Level::INFO) {
            $crate::steps::unless_disabled(::tracing::info_span!($($arg)*))
        } else {
            ::tracing::Span::none()
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test, as it sets the process's policy (no other test of this crate depends on it).
    #[test]
    fn step_spans_follow_the_policy_and_traced_scopes() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let wanted_inside = |runtime: &tokio::runtime::Runtime| {
            runtime.block_on(async {
                let decision = std::pin::pin!(async {
                    let before = step_spans_wanted();
                    // Still wanted after the task was suspended and polled again.
                    tokio::task::yield_now().await;
                    (before, step_spans_wanted())
                });
                let seen = traced(&tracing::Span::none(), decision).await;
                assert!(!IN_TRACED.with(Cell::get), "the flag outlived the scope");
                seen
            })
        };
        set_step_spans(StepSpans::InTracedScopes);
        assert!(!step_spans_wanted());
        assert_eq!(wanted_inside(&runtime), (true, true));
        assert!(!step_spans_wanted());
        set_step_spans(StepSpans::Never);
        assert_eq!(wanted_inside(&runtime), (false, false));
        set_step_spans(StepSpans::Always);
        assert!(step_spans_wanted());

        // Wanted or nothing: a span the subscriber refuses (or made with no subscriber) is
        // `Span::none()`, never a disabled span holding metadata for `record` to search.
        assert!(crate::step_span!("wanted", trustgate.reason = tracing::field::Empty).is_none());
        tracing::subscriber::with_default(Wants("wanted"), || {
            let wanted = crate::step_span!("wanted", trustgate.reason = tracing::field::Empty);
            assert!(!wanted.is_disabled());
            let refused = crate::step_span!("refused", trustgate.reason = tracing::field::Empty);
            assert!(refused.is_none());
        });
    }

    /// A subscriber that takes the spans of one name and nothing else.
    struct Wants(&'static str);

    impl tracing::Subscriber for Wants {
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
            meta.name() == self.0
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
