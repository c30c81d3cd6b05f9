//! The audit log (`[audit]`): one JSON line per decision, apart from the access log, written
//! without blocking the request path, and optionally chained so that an edit shows.
//!
//! **Off the request path.** A front door hands an [`Event`] (a few words: the time, the route's
//! `Arc`, the verified token's `Arc`, the peer, codes; no allocation) to a bounded queue with `try_send`; a full
//! queue drops the event and counts it (`trustgate_audit_dropped_total`). One thread owns the
//! file: it formats, hashes and appends each batch, then flushes, and logs the dropped count at
//! most once per [`DROP_REPORT_INTERVAL`]. No lock is held across I/O on the request path, and
//! the writer's I/O never runs on a runtime worker.
//!
//! **What an event holds.** Time, front door, route and pattern, method, outcome, reason code and
//! step, issuer, `kid`, subject (SHA-256 by default, or clear with `subject = "clear"`), the
//! token's `jti` (always SHA-256), the client address and the trace id. Never the token.
//!
//! **Tamper evidence** (`chain = true`, the default). Each event carries `prev`, the `hash` of
//! the event before it (64 zeros for a new file), and `hash`, the hex SHA-256 of its canonical
//! JSON without `hash` (compact, keys sorted). Editing an event breaks its own hash; removing or
//! inserting one breaks the next event's `prev`. `trustgate audit verify FILE` checks both and
//! names the first line that fails. A restart continues the chain from the file's last event.
//! The chain proves the file consistent, not authentic or complete: the hash has no key, so
//! whoever can write the file can change any event and recompute the chain from there on, append
//! events, or cut the last ones off. Ship it to where the gateway cannot rewrite it, and keep the
//! last hash received (docs/operations.md).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use http::Method;
use prometheus_client::metrics::counter::Counter;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use trustgate_core::VerifiedToken;
use trustgate_edge::{Outcome, Route, Step};

use crate::config::{AuditConfig, AuditPath, ConfigError, SubjectMode};
use crate::reader_safe;
use crate::record::Door;

/// The dropped count is logged at most this often.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// The most events written before one flush.
const MAX_BATCH: usize = 512;
/// The longest line `audit verify` reads. An event is a few hundred bytes; a clear `subject` is
/// at most a token (`cache.max_token_bytes`, 8 KiB by default).
const MAX_LINE: usize = 16 * 1024 * 1024;
/// `prev` of a chain's first event.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One decision, as a front door saw it. Formatted by the writer thread, not on the request path.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) time: SystemTime,
    pub(crate) door: Door,
    pub(crate) route: Option<Arc<Route>>,
    pub(crate) method: Option<Method>,
    pub(crate) outcome: Outcome,
    /// The reason code of a refusal.
    pub(crate) reason: Option<&'static str>,
    pub(crate) step: Option<Step>,
    pub(crate) token: Option<VerifiedToken>,
    pub(crate) client: IpAddr,
    pub(crate) trace_id: Option<[u8; 16]>,
}

enum Message {
    Event(Event),
    /// Answered once everything queued before it is written and flushed.
    Flush(oneshot::Sender<()>),
}

/// The request side of the audit log: cheap to clone, shared by every runtime of the process.
#[derive(Clone)]
pub(crate) struct Sink {
    queue: mpsc::Sender<Message>,
    dropped: Counter,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish_non_exhaustive()
    }
}

impl Sink {
    /// Opens the audit file (or standard output) and starts the writer thread. A file that
    /// cannot be opened is a configuration error, found before any port is bound.
    pub(crate) fn start(config: &AuditConfig, dropped: Counter) -> Result<Self, ConfigError> {
        let (out, prev): (Box<dyn Write + Send>, String) = match &config.path {
            AuditPath::Stdout => (Box::new(std::io::stdout()), GENESIS.to_owned()),
            AuditPath::File(path) => {
                let prev = if config.chain {
                    last_hash(path).map_err(|err| {
                        ConfigError(format!(
                            "audit.path {}: cannot read the last event to continue its chain: {err}",
                            path.display()
                        ))
                    })?
                } else {
                    GENESIS.to_owned()
                };
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|err| {
                        ConfigError(format!(
                            "audit.path {}: cannot open for appending: {err}",
                            path.display()
                        ))
                    })?;
                (Box::new(file), prev)
            }
        };
        let (queue, events) = mpsc::channel(config.queue);
        let writer = Writer {
            out,
            subject: config.subject,
            prev: config.chain.then_some(prev),
            dropped: dropped.clone(),
            reported: 0,
            last_report: None,
            cut: false,
        };
        std::thread::Builder::new()
            .name("trustgate-audit".into())
            .spawn(move || writer.run(events))
            .map_err(|err| ConfigError(format!("cannot start the audit writer: {err}")))?;
        Ok(Self { queue, dropped })
    }

    /// Queues an event, or drops and counts it when the queue is full. Never waits.
    pub(crate) fn record(&self, event: Event) {
        if self.queue.try_send(Message::Event(event)).is_err() {
            self.dropped.inc();
        }
    }

    /// Waits (up to `wait`) until every event queued so far is written: at shutdown.
    pub(crate) async fn flush(&self, wait: Duration) {
        let (done, written) = oneshot::channel();
        let flushed = async {
            if self.queue.send(Message::Flush(done)).await.is_ok() {
                let _ = written.await;
            }
        };
        let _ = tokio::time::timeout(wait, flushed).await;
    }
}

/// The writer thread's state: it owns the output.
struct Writer {
    out: Box<dyn Write + Send>,
    subject: SubjectMode,
    /// The last event's hash, when chaining.
    prev: Option<String>,
    dropped: Counter,
    /// The dropped count last logged.
    reported: u64,
    last_report: Option<Instant>,
    /// The last write failed and may have left part of a line in the file: the next batch starts
    /// on a new line, so that a cut line stays one broken line and the events after it parse.
    cut: bool,
}

impl Writer {
    fn run(mut self, mut events: mpsc::Receiver<Message>) {
        let mut batch = String::new();
        let mut flushed = Vec::new();
        while let Some(first) = events.blocking_recv() {
            let mut next = Some(first);
            let mut count = 0;
            while let Some(message) = next.take() {
                match message {
                    Message::Event(event) => {
                        self.append(&event, &mut batch);
                        count += 1;
                    }
                    Message::Flush(done) => flushed.push(done),
                }
                if count < MAX_BATCH {
                    next = events.try_recv().ok();
                }
            }
            if self.cut {
                batch.insert(0, '\n');
            }
            let written = self
                .out
                .write_all(batch.as_bytes())
                .and_then(|()| self.out.flush());
            self.cut = written.is_err();
            if let Err(err) = written {
                tracing::error!(error = %err, lost = count, "cannot write audit events");
            }
            batch.clear();
            for done in flushed.drain(..) {
                let _ = done.send(());
            }
            self.report_drops(false);
        }
        self.report_drops(true);
    }

    /// Formats one event as a line, chained to the one before.
    fn append(&mut self, event: &Event, batch: &mut String) {
        let mut fields = fields(event, self.subject);
        if let Some(prev) = &self.prev {
            fields.insert("prev", Value::String(prev.clone()));
            let hash = sha256_hex(canonical(&fields).as_bytes());
            fields.insert("hash", Value::String(hash.clone()));
            self.prev = Some(hash);
        }
        batch.push_str(&canonical(&fields));
        batch.push('\n');
    }

    /// Logs the dropped count if it grew, at most once per interval (always at the end).
    fn report_drops(&mut self, last: bool) {
        let dropped = self.dropped.get();
        let due = last
            || self
                .last_report
                .is_none_or(|at| at.elapsed() >= DROP_REPORT_INTERVAL);
        if dropped > self.reported && due {
            tracing::warn!(
                dropped_total = dropped,
                dropped_since_last_report = dropped - self.reported,
                "audit events dropped: the audit queue was full (audit.queue); see trustgate_audit_dropped_total"
            );
            self.reported = dropped;
            self.last_report = Some(Instant::now());
        }
    }
}

/// The event's fields, keyed for the canonical form.
fn fields(event: &Event, subject: SubjectMode) -> BTreeMap<&'static str, Value> {
    let text = |value: Option<&str>| value.map_or(Value::Null, |v| Value::String(v.to_owned()));
    let token = event.token.as_ref();
    let subject = token
        .and_then(|t| t.identity().subject())
        .map(|sub| match subject {
            SubjectMode::Hash => format!("sha256:{}", sha256_hex(sub.as_bytes())),
            SubjectMode::Clear => sub.to_owned(),
        });
    let jti = token
        .and_then(|t| t.claims().get("jti"))
        .and_then(Value::as_str)
        .map(|jti| format!("sha256:{}", sha256_hex(jti.as_bytes())));
    let mut fields = BTreeMap::new();
    fields.insert("time", Value::String(rfc3339(event.time)));
    fields.insert("door", Value::String(event.door.as_str().to_owned()));
    fields.insert(
        "route",
        text(event.route.as_deref().map(|r| r.name.as_str())),
    );
    fields.insert(
        "pattern",
        text(event.route.as_deref().map(|r| r.trust.name())),
    );
    fields.insert("method", text(event.method.as_ref().map(Method::as_str)));
    fields.insert("outcome", Value::String(event.outcome.as_str().to_owned()));
    fields.insert("reason", text(event.reason));
    fields.insert("step", text(event.step.map(Step::as_str)));
    fields.insert("issuer", text(token.map(VerifiedToken::issuer)));
    fields.insert("kid", text(token.and_then(VerifiedToken::key_id)));
    fields.insert("subject", subject.map_or(Value::Null, Value::String));
    fields.insert("jti", jti.map_or(Value::Null, Value::String));
    fields.insert("client", Value::String(event.client.to_string()));
    fields.insert(
        "trace_id",
        event
            .trace_id
            .map_or(Value::Null, |id| Value::String(hex(&id))),
    );
    fields
}

/// Compact JSON with the keys in byte order: the form an event's hash covers. Events are flat,
/// so sorting the top level sorts everything.
///
/// Besides what JSON must escape, characters that act on whoever reads the file are written as
/// `\u` escapes ([`reader_safe::json`]), so a clear `subject` cannot drive an operator's
/// terminal or reorder what they read. The parsed value is the same string.
fn canonical<K: AsRef<str> + Ord>(fields: &BTreeMap<K, Value>) -> String {
    canonical_form(fields, true)
}

/// The canonical form as written before the escapes above: JSON's own escapes only. A line in
/// this form still verifies, hashed in it, so that logs written by older versions keep verifying.
fn legacy_canonical<K: AsRef<str> + Ord>(fields: &BTreeMap<K, Value>) -> String {
    canonical_form(fields, false)
}

fn canonical_form<K: AsRef<str> + Ord>(fields: &BTreeMap<K, Value>, escape: bool) -> String {
    let mut text = String::from("{");
    let push = |text: &mut String, json: String| {
        if escape {
            text.push_str(&reader_safe::json(&json));
        } else {
            text.push_str(&json);
        }
    };
    for (index, (key, value)) in fields.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        push(
            &mut text,
            Value::String(key.as_ref().to_owned()).to_string(),
        );
        text.push(':');
        push(&mut text, value.to_string());
    }
    text.push('}');
    text
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// Whether `text` is what [`sha256_hex`] writes.
pub(crate) fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// `2026-01-02T03:04:05.678Z`.
fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm, for the proleptic
    // Gregorian calendar).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The `hash` of the file's last event, or the genesis value for a new or empty file.
fn last_hash(path: &Path) -> std::io::Result<String> {
    // Looked at before opening: opening a FIFO to read would wait for a writer, and a FIFO or
    // device has no last line to continue from anyway.
    let length = match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta.len(),
        Ok(_) => return Ok(GENESIS.to_owned()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(GENESIS.to_owned()),
        Err(err) => return Err(err),
    };
    let mut file = std::fs::File::open(path)?;
    // The last line is within the last 64 KiB: events are a few hundred bytes. Read as bytes:
    // the cut may fall inside a character of an earlier line (values are written as UTF-8), and
    // only the last line is decoded.
    file.seek(SeekFrom::Start(length.saturating_sub(64 * 1024)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let Some(last) = tail
        .split(|&b| b == b'\n')
        .rev()
        .find(|line| !line.trim_ascii().is_empty())
    else {
        return Ok(GENESIS.to_owned());
    };
    match serde_json::from_slice::<Value>(last)
        .ok()
        .as_ref()
        .and_then(|event| event.get("hash"))
        .and_then(Value::as_str)
    {
        Some(hash) => Ok(hash.to_owned()),
        None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "its last line is not a chained event; move the file aside or set audit.chain = false",
        )),
    }
}

/// Where a chain breaks: the 1-based line, and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Break {
    pub(crate) line: usize,
    pub(crate) problem: &'static str,
}

/// What a verified file holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    pub(crate) events: usize,
    /// The first event's `prev`: the genesis value, or the last hash of the file before it.
    pub(crate) starts_from: String,
    /// The last event's hash: what to keep elsewhere and give to a later `--expect`.
    pub(crate) last: String,
    /// The line of the event whose hash `--expect` gave.
    pub(crate) expected_at: Option<usize>,
}

/// Checks a chained audit log: every event's `hash` against its content, every `prev` against
/// the event before. Stops at the first break; a file without events is one.
///
/// # Errors
/// The file cannot be read (`Err(Err(..))`), or the first [`Break`].
#[cfg(test)]
pub(crate) fn verify(path: &Path) -> Result<Verified, Result<Break, std::io::Error>> {
    verify_expecting(path, None)
}

/// [`verify`], and with `expect` (a hash kept from this log earlier, away from whoever can write
/// the file) the chain must also hold an event with that hash. The hash has no key, so a rewrite
/// of the file from some event on can make a consistent chain; it cannot make one that still
/// holds a hash taken from after the rewritten event.
///
/// # Errors
/// As [`verify`]; and a [`Break`] at the last line when no event has the expected hash.
pub(crate) fn verify_expecting(
    path: &Path,
    expect: Option<&str>,
) -> Result<Verified, Result<Break, std::io::Error>> {
    let file = std::fs::File::open(path).map_err(Err)?;
    let mut expected_at = None;
    let mut prev: Option<String> = None;
    let mut starts_from = GENESIS.to_owned();
    let mut events = 0;
    let mut reader = BufReader::new(file);
    let mut bytes = Vec::new();
    let mut number = 0;
    loop {
        // Read as bytes: a line edited into invalid UTF-8 is a broken line to name, not an
        // unreadable file. At most one byte past the limit: a line without an end (a file of
        // garbage, `/dev/zero`) is named, not read into memory whole.
        bytes.clear();
        let read = reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut bytes)
            .map_err(Err)?;
        if read == 0 {
            break;
        }
        number += 1;
        let broken = |problem| {
            Err(Ok(Break {
                line: number,
                problem,
            }))
        };
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
        }
        if bytes.len() > MAX_LINE {
            return broken("longer than 16 MiB (not an event trustgate writes)");
        }
        let Ok(line) = std::str::from_utf8(&bytes) else {
            return broken("not UTF-8 (an edited line)");
        };
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line) else {
            return broken("not a JSON object (a truncated or edited line)");
        };
        let mut fields: BTreeMap<String, Value> = object.into_iter().collect();
        // The writer writes exactly the canonical form, hash included. Anything else was edited,
        // even where the hash still matches: a duplicated member (`"outcome":"allowed"` added
        // before the real one, which a JSON parser keeps last, while grep finds the first),
        // spaces, reordered members.
        let form = if canonical(&fields) == line {
            canonical
        } else if legacy_canonical(&fields) == line {
            legacy_canonical
        } else {
            return broken("not in the form trustgate writes (a duplicated member or other edit)");
        };
        let Some(Value::String(hash)) = fields.remove("hash") else {
            return broken("no hash (written with audit.chain = false?)");
        };
        let Some(Value::String(event_prev)) = fields.get("prev").cloned() else {
            return broken("no prev");
        };
        // The first event's prev is compared with nothing in the file and is printed: anything
        // but a hash there (an escape sequence for the operator's terminal, say) is an edit.
        if !is_hash(&event_prev) {
            return broken("its prev is not a SHA-256 hash (64 lowercase hex digits)");
        }
        if sha256_hex(form(&fields).as_bytes()) != hash {
            return broken("its hash does not match its content: the event was changed");
        }
        match &prev {
            None => starts_from = event_prev,
            Some(expected) if *expected != event_prev => {
                return broken(
                    "its prev is not the hash of the line before: an event was removed, inserted or reordered",
                );
            }
            Some(_) => {}
        }
        if expect == Some(hash.as_str()) {
            expected_at = Some(number);
        }
        prev = Some(hash);
        events += 1;
    }
    // Nothing to verify is not an intact chain: a file truncated to nothing must not pass, and
    // there is no first prev to print. (A file of one blank line is already a broken line 1.)
    if events == 0 {
        return Err(Ok(Break {
            line: 1,
            problem: "no events (an empty file: truncated, or nothing written yet)",
        }));
    }
    if expect.is_some() && expected_at.is_none() {
        return Err(Ok(Break {
            line: number,
            problem: "the chain ends here and no event has the hash given with --expect: the file was rewritten from an event before it, or cut short before it",
        }));
    }
    Ok(Verified {
        events,
        starts_from,
        last: prev.unwrap_or_default(),
        expected_at,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// The tail read to continue the chain may start inside a multi-byte character of an earlier
    /// line; the last line is found all the same.
    #[test]
    fn the_last_hash_is_found_when_the_tail_starts_inside_a_character() {
        let dir = std::env::temp_dir().join(format!("trustgate-audit-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let hash = "ab".repeat(32);
        let last = format!("{{\"hash\":\"{hash}\"}}\n");
        for offset in 0..2 {
            // 2-byte characters up to the last line: one of the two offsets puts the 64 KiB cut
            // on a character's second byte.
            let mut text = String::from("{\"subject\":\"");
            text.push_str(&"é".repeat(40_000));
            text.push_str(&" ".repeat(offset));
            text.push_str("\"}\n");
            text.push_str(&last);
            std::fs::write(&path, &text).unwrap();
            assert_eq!(last_hash(&path).unwrap(), hash, "offset {offset}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A write cut short (a full disk: part of the batch reached the file, then `ENOSPC`) must
    /// not glue the next batch onto the partial line: that corrupts the next event too, and a
    /// restart then refuses to start ("its last line is not a chained event").
    #[test]
    fn a_write_cut_short_does_not_corrupt_the_next_event() {
        struct CutOnce {
            file: std::fs::File,
            cut: bool,
        }
        impl Write for CutOnce {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if !self.cut {
                    self.cut = true;
                    self.file.write_all(&buf[..buf.len() / 2])?;
                    return Err(std::io::Error::other("No space left on device"));
                }
                self.file.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.file.flush()
            }
        }
        let dir = std::env::temp_dir().join(format!("trustgate-audit-cut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let writer = test_writer(Box::new(CutOnce { file, cut: false }));
        let (queue, events) = mpsc::channel(8);
        let thread = std::thread::spawn(move || writer.run(events));
        for reason in [None, Some("expired")] {
            queue.blocking_send(Message::Event(event(reason))).unwrap();
            let (done, written) = oneshot::channel();
            queue.blocking_send(Message::Flush(done)).unwrap();
            written.blocking_recv().unwrap();
        }
        drop(queue);
        thread.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap();
        let event: Value = serde_json::from_str(last).unwrap_or_else(|err| {
            panic!("the event after the failed write is not a line of its own ({err}): {text:?}")
        });
        assert_eq!(event["reason"], "expired");
        assert_eq!(last_hash(&path).unwrap(), event["hash"].as_str().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T12:34:56.789Z: a leap day.
        let time = UNIX_EPOCH + Duration::from_millis(1_709_210_096_789);
        assert_eq!(rfc3339(time), "2024-02-29T12:34:56.789Z");
        let time = UNIX_EPOCH + Duration::from_secs(4_102_444_799);
        assert_eq!(rfc3339(time), "2099-12-31T23:59:59.000Z");
    }

    #[test]
    fn the_canonical_form_sorts_keys_and_is_compact() {
        let mut fields = BTreeMap::new();
        fields.insert("b", Value::from(1));
        fields.insert("a", Value::String("x\"y".into()));
        fields.insert("c", Value::Null);
        assert_eq!(canonical(&fields), r#"{"a":"x\"y","b":1,"c":null}"#);
    }

    /// A clear subject (the only text in an event a client chooses) holding DEL, a C1 CSI, a
    /// bidirectional override and a line separator is written with `\u` escapes: no raw byte of
    /// them in the file, the same string when parsed, and a chain that verifies. A line written
    /// in the form before the escapes, hashed in it, verifies too.
    #[test]
    fn characters_that_act_on_the_reader_are_escaped_and_older_lines_still_verify() {
        let dir =
            std::env::temp_dir().join(format!("trustgate-audit-escape-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let subject = "eve\u{7f}\u{9b}31m\u{202e}gnp.exe\u{2028}x";
        let line = |form: fn(&BTreeMap<&'static str, Value>) -> String| {
            let mut fields = fields(&event(None), SubjectMode::Clear);
            fields.insert("subject", Value::String(subject.to_owned()));
            fields.insert("prev", Value::String(GENESIS.to_owned()));
            let hash = sha256_hex(form(&fields).as_bytes());
            fields.insert("hash", Value::String(hash));
            form(&fields) + "\n"
        };
        let written = line(canonical);
        assert!(
            written.contains(r#""subject":"eve\u007f\u009b31m\u202egnp.exe\u2028x""#),
            "{written}"
        );
        for raw in ["\u{7f}", "\u{9b}", "\u{202e}", "\u{2028}"] {
            assert!(!written.contains(raw), "{raw:?} in {written}");
        }
        let parsed: Value = serde_json::from_str(&written).unwrap();
        assert_eq!(parsed["subject"], subject);
        std::fs::write(&path, &written).unwrap();
        assert_eq!(verify(&path).unwrap().events, 1);

        let older = line(legacy_canonical);
        assert!(older.contains(subject), "{older}");
        std::fs::write(&path, &older).unwrap();
        assert_eq!(verify(&path).unwrap().events, 1);
        // Each form is checked against its own hash: a legacy line under the new form's hash is
        // an edit.
        let older_hash: Value = serde_json::from_str(&older).unwrap();
        let mismatched = older.replace(
            older_hash["hash"].as_str().unwrap(),
            parsed["hash"].as_str().unwrap(),
        );
        assert_ne!(mismatched, older);
        std::fs::write(&path, &mismatched).unwrap();
        assert!(verify(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn event(reason: Option<&'static str>) -> Event {
        Event {
            time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            door: Door::Proxy,
            route: None,
            method: Some(Method::GET),
            outcome: if reason.is_some() {
                Outcome::Unauthorized
            } else {
                Outcome::Allowed
            },
            reason,
            step: reason.map(|_| Step::Validate),
            token: None,
            client: IpAddr::from([127, 0, 0, 1]),
            trace_id: Some([0xab; 16]),
        }
    }

    /// A writer into `out` from the start of a chain, hashing subjects.
    fn test_writer(out: Box<dyn Write + Send>) -> Writer {
        Writer {
            out,
            subject: SubjectMode::Hash,
            prev: Some(GENESIS.to_owned()),
            dropped: Counter::default(),
            reported: 0,
            last_report: None,
            cut: false,
        }
    }

    fn chained(count: usize) -> String {
        let mut writer = test_writer(Box::new(std::io::sink()));
        let mut text = String::new();
        for index in 0..count {
            let reason = (index % 2 == 1).then_some("expired");
            writer.append(&event(reason), &mut text);
        }
        text
    }

    /// The first event's `prev` is printed by `audit verify` ("first prev …"): a forged one
    /// holding an escape sequence, its hash recomputed, must be named, not printed.
    #[test]
    fn a_first_prev_that_is_not_a_hash_is_named() {
        let dir = std::env::temp_dir().join(format!("trustgate-audit-prev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        for prev in [
            format!("\u{1b}[2K\r{GENESIS}"),
            GENESIS.to_uppercase().replace('0', "A"),
            GENESIS[1..].to_owned(),
        ] {
            let mut writer = test_writer(Box::new(std::io::sink()));
            writer.prev = Some(prev.clone());
            let mut text = String::new();
            writer.append(&event(None), &mut text);
            writer.append(&event(Some("expired")), &mut text);
            std::fs::write(&path, &text).unwrap();
            assert_eq!(
                verify(&path).map_err(Result::ok),
                Err(Some(Break {
                    line: 1,
                    problem: "its prev is not a SHA-256 hash (64 lowercase hex digits)",
                })),
                "{prev:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An empty file (truncated, say) is not "0 events, chain intact (first prev 0000…)".
    #[test]
    fn an_empty_file_does_not_verify() {
        let dir =
            std::env::temp_dir().join(format!("trustgate-audit-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        std::fs::write(&path, "").unwrap();
        assert_eq!(
            verify(&path).map_err(Result::ok),
            Err(Some(Break {
                line: 1,
                problem: "no events (an empty file: truncated, or nothing written yet)",
            }))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A line without an end (here an endless one) is named once it passes the limit, not read
    /// into memory until the process is killed.
    #[cfg(unix)]
    #[test]
    fn a_line_without_an_end_is_named_at_the_limit() {
        assert_eq!(
            verify(Path::new("/dev/zero")).map_err(Result::ok),
            Err(Some(Break {
                line: 1,
                problem: "longer than 16 MiB (not an event trustgate writes)",
            }))
        );
    }

    /// Whoever can write the file can rewrite it from some event on into a chain that verifies
    /// (the hash has no key); a hash kept from before the rewrite is what notices.
    #[test]
    fn a_rewritten_chain_verifies_but_not_against_a_hash_kept_from_before() {
        let dir =
            std::env::temp_dir().join(format!("trustgate-audit-expect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let text = chained(4);
        std::fs::write(&path, &text).unwrap();
        let hash_of = |text: &str, line: usize| {
            let event: Value = serde_json::from_str(text.lines().nth(line - 1).unwrap()).unwrap();
            event["hash"].as_str().unwrap().to_owned()
        };
        let kept = hash_of(&text, 3);
        let verified = verify_expecting(&path, Some(&kept)).unwrap();
        assert_eq!(
            (verified.events, verified.expected_at, verified.last),
            (4, Some(3), hash_of(&text, 4))
        );

        // Event 2 changed from "expired" to allowed and the chain recomputed from there on.
        let mut writer = test_writer(Box::new(std::io::sink()));
        let mut forged = String::new();
        for _ in 0..4 {
            writer.append(&event(None), &mut forged);
        }
        assert_eq!(forged.lines().next(), text.lines().next());
        std::fs::write(&path, &forged).unwrap();
        assert_eq!(verify(&path).unwrap().events, 4);
        assert_eq!(
            verify_expecting(&path, Some(&kept)).map_err(Result::ok),
            Err(Some(Break {
                line: 4,
                problem: "the chain ends here and no event has the hash given with --expect: the file was rewritten from an event before it, or cut short before it",
            }))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_written_chain_verifies_and_an_edit_is_named() {
        let dir = std::env::temp_dir().join(format!("trustgate-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let text = chained(4);
        std::fs::write(&path, &text).unwrap();
        let verified = verify(&path).unwrap();
        assert_eq!(verified.events, 4);
        assert_eq!(verified.starts_from, GENESIS);
        assert_eq!(last_hash(&path).unwrap().len(), 64);
        // The last line cut just before its line feed is still whole.
        std::fs::write(&path, text.trim_end()).unwrap();
        assert_eq!(verify(&path).unwrap().events, 4);
        std::fs::write(&path, &text).unwrap();

        let first = text.lines().next().unwrap();
        assert!(first.contains(r#""outcome":"allowed""#), "{first}");
        assert!(first.contains(r#""trace_id":"abababababababababababababababab""#));
        assert!(first.contains(&format!(r#""prev":"{GENESIS}""#)));

        // Line 3 edited: its own hash no longer matches.
        let edited: Vec<String> = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 2 {
                    l.replace("allowed", "forbidden")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        std::fs::write(&path, edited.join("\n") + "\n").unwrap();
        let broken = verify(&path).unwrap_err().unwrap();
        assert_eq!(broken.line, 3);

        // Line 2 removed: line 3 (now line 2) does not follow line 1.
        let removed: Vec<&str> = text
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, l)| l)
            .collect();
        std::fs::write(&path, removed.join("\n") + "\n").unwrap();
        let broken = verify(&path).unwrap_err().unwrap();
        assert_eq!(broken.line, 2);

        // Edits that leave the hash matching, or the file unreadable as text, are named too: a
        // member duplicated in front of the real one (a JSON parser keeps the last, grep finds
        // the first), a space, and a byte that is not UTF-8.
        let line_2_edited = |edit: &dyn Fn(&str) -> Vec<u8>| {
            let mut bytes = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if i == 1 {
                    bytes.extend(edit(line));
                } else {
                    bytes.extend_from_slice(line.as_bytes());
                }
                bytes.push(b'\n');
            }
            std::fs::write(&path, bytes).unwrap();
            verify(&path).unwrap_err().unwrap()
        };
        let duplicated = |line: &str| {
            let outcome = if line.contains(r#""outcome":"allowed""#) {
                "refused"
            } else {
                "allowed"
            };
            line.replacen('{', &format!(r#"{{"outcome":"{outcome}","#), 1)
                .into_bytes()
        };
        let spaced = |line: &str| line.replacen(',', ", ", 1).into_bytes();
        let not_utf8 = |line: &str| {
            let mut bytes = line.as_bytes().to_vec();
            bytes[3] = 0xff;
            bytes
        };
        for (edit, problem) in [
            (&duplicated as &dyn Fn(&str) -> Vec<u8>, "duplicated member"),
            (&spaced, "duplicated member"),
            (&not_utf8, "not UTF-8"),
        ] {
            let broken = line_2_edited(edit);
            assert_eq!(broken.line, 2, "{problem}");
            assert!(broken.problem.contains(problem), "{}", broken.problem);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
