//! Ended spans, batched for the exporter by a task on the gateway's runtime.
//!
//! The SDK's batch processor runs on a thread of its own, and its async variant wakes its task
//! for every span through a channel. A thread makes every socket call of a one-worker gateway pay
//! for glibc's cancellation points, sampled or not (some 300 instructions per proxied request,
//! callgrind); the channel costs each sampled request some 7,500 instructions more than this
//! queue does. Here a span's end is one uncontended lock and a push, and the task wakes on its
//! schedule, when a batch is full, or when asked to flush or stop.
//!
//! `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` and
//! `OTEL_BSP_EXPORT_TIMEOUT` tune it, as they tune the SDK's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{Notify, mpsc};

/// The batching limits, from `OTEL_BSP_*` or the specification's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) delay: Duration,
    pub(crate) max_queue: usize,
    pub(crate) max_batch: usize,
    pub(crate) export_timeout: Duration,
}

impl Limits {
    /// The limits `OTEL_BSP_*` set (an unreadable or zero value keeps its default); a batch is
    /// never larger than the queue.
    pub(crate) fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let number = |name: &str, default: u64| {
            var(name)
                .and_then(|value| value.trim().parse::<u64>().ok())
                .filter(|value| *value > 0)
                .unwrap_or(default)
        };
        let size = |name: &str, default: usize| {
            usize::try_from(number(name, default as u64)).unwrap_or(default)
        };
        let max_queue = size("OTEL_BSP_MAX_QUEUE_SIZE", 2_048);
        Self {
            delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5_000)),
            max_queue,
            max_batch: size("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512).min(max_queue),
            export_timeout: Duration::from_millis(number("OTEL_BSP_EXPORT_TIMEOUT", 30_000)),
        }
    }
}

/// The span processor: queues ended spans for [`run`].
#[derive(Debug)]
pub(crate) struct Batcher {
    queue: Arc<Queue>,
    control: mpsc::UnboundedSender<Control>,
}

#[derive(Debug)]
struct Queue {
    spans: Mutex<Vec<SpanData>>,
    /// Signalled when a batch is full.
    full: Notify,
    dropped: AtomicU64,
    limits: Limits,
}

/// A request to the task, answered when done.
#[derive(Debug)]
enum Control {
    Flush(std::sync::mpsc::SyncSender<OTelSdkResult>),
    Shutdown(std::sync::mpsc::SyncSender<OTelSdkResult>),
}

impl Batcher {
    /// Starts the export task on the current runtime. The exporter has its resource already:
    /// the task owns it from here on.
    pub(crate) fn start<E: SpanExporter + 'static>(exporter: E, limits: Limits) -> Self {
        let queue = Arc::new(Queue {
            spans: Mutex::new(Vec::new()),
            full: Notify::new(),
            dropped: AtomicU64::new(0),
            limits,
        });
        let (control, requests) = mpsc::unbounded_channel();
        tokio::spawn(run(Arc::clone(&queue), exporter, requests));
        Self { queue, control }
    }

    /// Asks the task for `request` and waits at most `timeout` for its answer. Blocks: called by
    /// the SDK's `force_flush` and `shutdown`, which the gateway calls off the runtime's threads.
    fn ask(
        &self,
        request: impl FnOnce(std::sync::mpsc::SyncSender<OTelSdkResult>) -> Control,
        timeout: Duration,
    ) -> OTelSdkResult {
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        self.control
            .send(request(answer))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        answered
            .recv_timeout(timeout)
            .unwrap_or(Err(OTelSdkError::Timeout(timeout)))
    }
}

impl SpanProcessor for Batcher {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        let queue = &self.queue;
        let mut spans = queue.spans.lock().unwrap_or_else(PoisonError::into_inner);
        if spans.len() >= queue.limits.max_queue {
            drop(spans);
            // Counted here, logged by the task: an event from inside the subscriber's
            // callback (this runs in a span's close) would be dropped as re-entrant.
            queue.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        spans.push(span);
        let full = spans.len() == queue.limits.max_batch;
        drop(spans);
        if full {
            queue.full.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let timeout = self.queue.limits.export_timeout;
        self.ask(Control::Flush, timeout)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.ask(Control::Shutdown, timeout)
    }

    /// The exporter was given the resource before it was handed to [`Batcher::start`].
    fn set_resource(&mut self, _resource: &Resource) {}
}

/// The export task: sends what is queued, in batches, on schedule, when a batch is full, and
/// when asked; ends when asked to stop or when the processor is gone.
async fn run<E: SpanExporter>(
    queue: Arc<Queue>,
    exporter: E,
    mut requests: mpsc::UnboundedReceiver<Control>,
) {
    let limits = queue.limits;
    let mut schedule = tokio::time::interval(limits.delay);
    schedule.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once.
    schedule.tick().await;
    let mut failing = false;
    let mut reported_drops = 0;
    loop {
        report_drops(&queue, &mut reported_drops);
        let (request, whole) = tokio::select! {
            _ = schedule.tick() => (None, true),
            // Full batches only: the spans that end while one is exported wait for their own
            // batch or the schedule, not for a small export of their own.
            () = queue.full.notified() => (None, false),
            request = requests.recv() => match request {
                Some(request) => (Some(request), true),
                None => {
                    // The processor is gone without a shutdown: what is queued still goes.
                    let _ = export_queued(&queue, &exporter, true, &mut failing).await;
                    let _ = exporter.shutdown();
                    report_drops(&queue, &mut reported_drops);
                    return;
                }
            },
        };
        let result = export_queued(&queue, &exporter, whole, &mut failing).await;
        match request {
            None => {}
            Some(Control::Flush(answer)) => {
                let _ = answer.send(result);
            }
            Some(Control::Shutdown(answer)) => {
                let result = result.and(exporter.shutdown());
                report_drops(&queue, &mut reported_drops);
                let _ = answer.send(result);
                return;
            }
        }
    }
}

/// Logs the spans dropped (queue full) since the last report: at most once a wake of the task,
/// so at most every `OTEL_BSP_SCHEDULE_DELAY` while the queue stays full.
fn report_drops(queue: &Queue, reported: &mut u64) {
    let dropped = queue.dropped.load(Ordering::Relaxed);
    if dropped > *reported {
        tracing::warn!(
            dropped = dropped - *reported,
            total = dropped,
            max_queue = queue.limits.max_queue,
            "telemetry: the span queue was full; spans were dropped"
        );
        *reported = dropped;
    }
}

/// Exports the queued spans a batch at a time: all of them (`whole`), or only full batches. A
/// failure is logged when exports start failing and when they recover, not at every attempt.
async fn export_queued<E: SpanExporter>(
    queue: &Queue,
    exporter: &E,
    whole: bool,
    failing: &mut bool,
) -> OTelSdkResult {
    let limits = queue.limits;
    let mut outcome = Ok(());
    loop {
        let batch = {
            let mut spans = queue.spans.lock().unwrap_or_else(PoisonError::into_inner);
            if spans.len() < limits.max_batch && !whole {
                Vec::new()
            } else if spans.len() <= limits.max_batch {
                // The next one sized as this one was, not grown a span at a time.
                let size = spans.len();
                std::mem::replace(&mut *spans, Vec::with_capacity(size))
            } else {
                spans.drain(..limits.max_batch).collect()
            }
        };
        if batch.is_empty() {
            return outcome;
        }
        let result = match tokio::time::timeout(limits.export_timeout, exporter.export(batch)).await
        {
            Ok(result) => result,
            Err(_) => Err(OTelSdkError::Timeout(limits.export_timeout)),
        };
        match &result {
            Ok(()) if *failing => {
                *failing = false;
                tracing::info!("telemetry: span export recovered");
            }
            Err(err) if !*failing => {
                *failing = true;
                tracing::warn!(error = %err, "telemetry: span export failed");
            }
            _ => {}
        }
        outcome = outcome.and(result);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::telemetry::test_env;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceState};
    use opentelemetry::{InstrumentationScope, trace::TraceId};
    use std::time::SystemTime;

    /// Records each batch it is given.
    #[derive(Debug, Clone, Default)]
    struct Recorder {
        batches: Arc<Mutex<Vec<Vec<String>>>>,
        shut: Arc<AtomicU64>,
    }

    impl SpanExporter for Recorder {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let names = batch.iter().map(|span| span.name.to_string()).collect();
            self.batches.lock().unwrap().push(names);
            Ok(())
        }

        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            self.shut.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    fn span(name: &str, sampled: bool) -> SpanData {
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes([1; 16]),
                SpanId::from_bytes([2; 8]),
                flags,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.to_owned().into(),
            start_time: SystemTime::UNIX_EPOCH,
            end_time: SystemTime::UNIX_EPOCH,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: opentelemetry_sdk::trace::SpanEvents::default(),
            links: opentelemetry_sdk::trace::SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        }
    }

    fn limits(max_queue: usize, max_batch: usize) -> Limits {
        Limits {
            delay: Duration::from_secs(3_600),
            max_queue,
            max_batch,
            export_timeout: Duration::from_secs(5),
        }
    }

    /// Lets the task run until `done` holds, for 5 s at most (the test's runtime has one
    /// thread). Sleeps rather than only yields: a thousand yields were once not enough on a
    /// loaded machine (CI), and a millisecond's sleep is far below the 1 h export schedule.
    async fn until(done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("the export task did not get there");
    }

    #[tokio::test]
    async fn a_full_batch_is_exported_before_the_schedule() {
        let recorder = Recorder::default();
        let batcher = Batcher::start(recorder.clone(), limits(10, 3));
        for name in ["a", "b", "c", "d"] {
            batcher.on_end(span(name, true));
        }
        until(|| !recorder.batches.lock().unwrap().is_empty()).await;
        // The task woke for the full batch; the rest waits for the next one or the schedule.
        assert_eq!(*recorder.batches.lock().unwrap(), [["a", "b", "c"]]);
        assert_eq!(batcher.queue.spans.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn unsampled_spans_are_not_queued_and_a_full_queue_drops() {
        let recorder = Recorder::default();
        let batcher = Batcher::start(recorder.clone(), limits(2, 2));
        batcher.on_end(span("unsampled", false));
        batcher.on_end(span("a", true));
        // The batch is full with this one (the task has not run yet): queued, then signalled.
        batcher.on_end(span("b", true));
        batcher.on_end(span("dropped", true));
        assert_eq!(batcher.queue.dropped.load(Ordering::Relaxed), 1);
        until(|| !recorder.batches.lock().unwrap().is_empty()).await;
        assert_eq!(*recorder.batches.lock().unwrap(), [["a", "b"]]);
    }

    #[tokio::test]
    async fn shutdown_exports_what_is_queued_in_batches_and_stops_the_exporter() {
        let recorder = Recorder::default();
        let batcher = Batcher::start(recorder.clone(), limits(10, 2));
        // All queued before the task first runs (one thread, no await yet).
        for name in ["a", "b", "c", "d", "e"] {
            batcher.on_end(span(name, true));
        }
        let batcher = Arc::new(batcher);
        let stopping = Arc::clone(&batcher);
        let result = tokio::task::spawn_blocking(move || stopping.shutdown())
            .await
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
        let batches = recorder.batches.lock().unwrap().clone();
        assert_eq!(batches, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
        assert_eq!(recorder.shut.load(Ordering::Relaxed), 1);
        // Stopped: a second request finds no task.
        assert!(matches!(
            batcher.force_flush(),
            Err(OTelSdkError::AlreadyShutdown)
        ));
    }

    #[test]
    fn the_limits_come_from_otel_bsp_variables() {
        assert_eq!(
            Limits::from_env(test_env(&[])),
            Limits {
                delay: Duration::from_millis(5_000),
                max_queue: 2_048,
                max_batch: 512,
                export_timeout: Duration::from_millis(30_000),
            }
        );
        assert_eq!(
            Limits::from_env(test_env(&[
                ("OTEL_BSP_SCHEDULE_DELAY", "250"),
                ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1000"),
                ("OTEL_BSP_EXPORT_TIMEOUT", "zero"),
            ])),
            Limits {
                delay: Duration::from_millis(250),
                max_queue: 100,
                max_batch: 100,
                export_timeout: Duration::from_millis(30_000),
            }
        );
    }
}
