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

/// `tracing::info_span!` for a decision step, made only when [`step_spans_wanted`]: otherwise
/// `Span::none()`, without asking the subscriber.
#[macro_export]
macro_rules! step_span {
    ($($arg:tt)*) => {
        if $crate::steps::step_spans_wanted() {
            ::tracing::info_span!($($arg)*)
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
    }
}
