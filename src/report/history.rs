//! The audit history: one JSON line per run.
//!
//! Every run is recorded — passed, failed, interrupted, refused or dry — with who, where,
//! which runbook on which instance, the parameters (secrets as `***`) and each step's
//! result. Step outputs are not kept (they can be large); the run's JSON report has them.
//!
//! Runs are appended to the live segment `<state>/history.jsonl` under an exclusive `flock`,
//! so concurrent processes never interleave lines. When the live segment passes its size
//! (an eighth of `history.max_bytes`, between 64 KiB and 64 MiB) it is sealed: renamed,
//! under the lock, into `<state>/history.d/` — never rewritten. Then sealed segments whose
//! newest run is older than `keep_days`, and the oldest while the history is larger than
//! `max_bytes`, are deleted. A process that opened the live segment just before it was
//! sealed sees, once it holds the lock, that the path now names another file, and opens
//! that one.
//!
//! Reading is newest first: the live segment, then the sealed ones newest first, each read
//! backwards from its end in blocks, so `opsctl history -n 20` reads a few blocks whatever
//! the history's size.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::RunReport;
use crate::error::Error;
use crate::inventory::HistorySettings;

/// The live segment in a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("history.jsonl")
}

/// The directory of sealed segments.
pub fn sealed_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("history.d")
}

/// How large the live segment grows before it is sealed.
fn segment_bytes(settings: &HistorySettings) -> u64 {
    (settings.max_bytes.0 / 8).clamp(64 * 1024, 64 * 1024 * 1024)
}

/// Appends a run, sealing the live segment and applying the retention when it is full.
pub fn append(state_dir: &Path, report: &RunReport, settings: &HistorySettings) -> Result<(), Error> {
    append_many(state_dir, std::slice::from_ref(report), settings)
}

/// Appends runs with one lock, one write and one `fsync` (a fleet's runs finishing
/// together are committed as a group).
pub fn append_many<R: std::borrow::Borrow<RunReport>>(state_dir: &Path, reports: &[R], settings: &HistorySettings) -> Result<(), Error> {
    append_with(state_dir, reports, settings, segment_bytes(settings))
}

fn append_with<R: std::borrow::Borrow<RunReport>>(state_dir: &Path, reports: &[R], settings: &HistorySettings, segment: u64) -> Result<(), Error> {
    if reports.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(state_dir).map_err(|e| Error::io(format!("cannot create {}", state_dir.display()), &e))?;
    let mut text = String::new();
    for report in reports {
        let mut record = report.borrow().clone();
        for step in &mut record.steps {
            step.outputs.clear();
        }
        let line = serde_json::to_string(&record).map_err(|e| Error::Io { context: "cannot encode the history record".into(), reason: e.to_string() })?;
        text.push_str(&crate::secret::scrub(&line));
        text.push('\n');
    }
    let p = path(state_dir);
    let io = |what: &str, e: &std::io::Error| Error::io(format!("cannot {what} history {}", p.display()), e);
    loop {
        let mut file = OpenOptions::new().create(true).append(true).open(&p).map_err(|e| io("open", &e))?;
        file.lock().map_err(|e| io("lock", &e))?;
        // Sealed by another process between our open and our lock: open the new live one.
        let opened = file.metadata().map_err(|e| io("read", &e))?;
        match std::fs::metadata(&p) {
            Ok(now) if now.ino() == opened.ino() && now.dev() == opened.dev() => {}
            _ => {
                let _ = file.unlock();
                continue;
            }
        }
        let written = file.write_all(text.as_bytes()).and_then(|_| file.sync_data());
        let result = written.map_err(|e| io("write", &e));
        if result.is_ok() && opened.len() + text.len() as u64 >= segment {
            if let Err(e) = seal(state_dir, &p) {
                tracing::warn!("the history segment was not sealed: {e}");
            }
            prune(state_dir, settings);
        }
        let _ = file.unlock();
        return result;
    }
}

/// Renames the full live segment into the sealed directory (the caller holds its lock).
fn seal(state_dir: &Path, live: &Path) -> std::io::Result<()> {
    let dir = sealed_dir(state_dir);
    std::fs::create_dir_all(&dir)?;
    // Names sort by time: a sealed segment's name is when it was sealed.
    let name = format!("{}-{}.jsonl", jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S%.9fZ"), std::process::id());
    std::fs::rename(live, dir.join(name))
}

/// The sealed segments, oldest first, with their size and last write.
fn sealed(state_dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out: Vec<_> = std::fs::read_dir(sealed_dir(state_dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.len(), m.modified().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Deletes sealed segments past the retention: older than `keep_days` (by their newest
/// run, the file's last write), then the oldest while everything is larger than `max_bytes`.
fn prune(state_dir: &Path, settings: &HistorySettings) {
    let keep = std::time::Duration::from_secs(u64::from(settings.keep_days) * 86_400);
    let cutoff = std::time::SystemTime::now().checked_sub(keep).unwrap_or(std::time::UNIX_EPOCH);
    let live = std::fs::metadata(path(state_dir)).map_or(0, |m| m.len());
    let mut total: u64 = live;
    let mut kept = Vec::new();
    for (p, len, modified) in sealed(state_dir) {
        if modified < cutoff {
            remove(&p);
        } else {
            total += len;
            kept.push((p, len));
        }
    }
    for (p, len) in kept {
        if total <= settings.max_bytes.0 {
            break;
        }
        remove(&p);
        total -= len;
    }
}

fn remove(p: &Path) {
    if let Err(e) = std::fs::remove_file(p) {
        tracing::warn!("cannot delete history segment {}: {e}", p.display());
    }
}

/// Every segment, newest first: the live one, then the sealed ones.
fn segments(state_dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![path(state_dir)];
    out.extend(sealed(state_dir).into_iter().rev().map(|(p, _, _)| p));
    out
}

/// The runs, newest first, read lazily; a line that does not parse is an `Err` with its
/// segment's path (counted by callers, never fatal).
pub fn newest_first(state_dir: &Path) -> impl Iterator<Item = Result<RunReport, PathBuf>> {
    segments(state_dir).into_iter().flat_map(|p| {
        let lines = match File::open(&p) {
            Ok(f) => Some(ReverseLines::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!("cannot read history {}: {}", p.display(), crate::error::io_reason(&e));
                None
            }
        };
        lines.into_iter().flatten().filter(|l| !l.iter().all(u8::is_ascii_whitespace)).map(move |l| serde_json::from_slice::<RunReport>(&l).map_err(|_| p.clone()))
    })
}

/// The lines of a file, last first, read backwards in blocks.
struct ReverseLines {
    file: File,
    /// Bytes not yet read lie before this offset.
    pos: u64,
    /// The start of a line whose beginning is in a block not yet read.
    carry: Vec<u8>,
    /// Complete lines of the last block read, in file order (popped from the end).
    ready: Vec<Vec<u8>>,
}

const BLOCK: u64 = 64 * 1024;

impl ReverseLines {
    fn new(mut file: File) -> ReverseLines {
        let pos = file.seek(SeekFrom::End(0)).unwrap_or(0);
        ReverseLines { file, pos, carry: Vec::new(), ready: Vec::new() }
    }
}

impl Iterator for ReverseLines {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(line) = self.ready.pop() {
                return Some(line);
            }
            if self.pos == 0 {
                return (!self.carry.is_empty()).then(|| std::mem::take(&mut self.carry));
            }
            let n = BLOCK.min(self.pos);
            self.pos -= n;
            let mut block = vec![0; n as usize];
            if self.file.seek(SeekFrom::Start(self.pos)).and_then(|_| self.file.read_exact(&mut block)).is_err() {
                self.pos = 0;
                self.carry.clear();
                return None;
            }
            block.append(&mut self.carry);
            let mut pieces = block.split(|b| *b == b'\n');
            // The first piece's start may lie in the block before this one.
            let first = pieces.next().unwrap_or_default().to_vec();
            self.ready = pieces.filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
            if self.pos == 0 {
                if !first.is_empty() {
                    self.ready.insert(0, first);
                }
            } else {
                self.carry = first;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(i: usize) -> RunReport {
        let now = jiff::Timestamp::now();
        RunReport {
            schema: super::super::SCHEMA.into(),
            run_id: format!("run-{i:06}"),
            runbook: "check".into(),
            runbook_source: "<embedded>/check.yaml".into(),
            instance: format!("inst-{}", i % 7),
            dry_run: false,
            status: super::super::RunStatus::Passed,
            exit_code: 0,
            started_at: now,
            finished_at: now,
            duration_ms: 1.0,
            user: "ops".into(),
            host: "h".into(),
            opsctl_version: "0".into(),
            params: serde_json::Map::new(),
            summary: super::super::Summary::default(),
            steps: Vec::new(),
            not_configured: Vec::new(),
            reason: None,
        }
    }

    fn settings(max: u64) -> HistorySettings {
        HistorySettings { keep_days: 90, max_bytes: crate::units::ByteSize(max) }
    }

    fn ids(dir: &Path) -> Vec<String> {
        newest_first(dir).map(|r| r.unwrap().run_id).collect()
    }

    #[test]
    fn reverse_lines_reads_every_line_last_first_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        // Lines that straddle the 64 KiB blocks, and no newline at the end.
        let lines: Vec<String> = (0..5000).map(|i| format!("{i}:{}", "x".repeat(i % 97))).collect();
        std::fs::write(&p, lines.join("\n")).unwrap();
        let back: Vec<String> = ReverseLines::new(File::open(&p).unwrap()).map(|l| String::from_utf8(l).unwrap()).collect();
        let mut expect = lines.clone();
        expect.reverse();
        assert_eq!(back, expect);
        std::fs::write(&p, "").unwrap();
        assert_eq!(ReverseLines::new(File::open(&p).unwrap()).count(), 0);
    }

    #[test]
    fn full_segments_are_sealed_and_read_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..300 {
            append_with(dir.path(), &[report(i)], &settings(1 << 30), 16 * 1024).unwrap();
        }
        let sealed = sealed(dir.path());
        assert!(sealed.len() >= 5, "{sealed:?}");
        let expect: Vec<String> = (0..300).rev().map(|i| format!("run-{i:06}")).collect();
        assert_eq!(ids(dir.path()), expect);
    }

    #[test]
    fn concurrent_appends_lose_nothing_across_sealing() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let d = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for i in 0..150 {
                        append_with(&d, &[report(t * 1000 + i)], &settings(1 << 30), 8 * 1024).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut got = ids(dir.path());
        assert_eq!(got.len(), 1200, "every record, each once");
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 1200);
        assert!(sealed(dir.path()).len() > 10);
    }

    #[test]
    fn retention_deletes_old_and_oldest_sealed_segments_never_the_live_one() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..200 {
            append_with(dir.path(), &[report(i)], &settings(1 << 30), 16 * 1024).unwrap();
        }
        let before = sealed(dir.path());
        // The oldest segment's newest run is 100 days old: keep_days 90 deletes it.
        let old = File::options().write(true).open(&before[0].0).unwrap();
        old.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(100 * 86_400)).unwrap();
        drop(old);
        prune(dir.path(), &settings(1 << 30));
        let after = sealed(dir.path());
        assert_eq!(after.len(), before.len() - 1);
        assert!(!after.iter().any(|s| s.0 == before[0].0));
        // Size: at most max_bytes, the oldest going first; the live segment stays.
        let live = std::fs::metadata(path(dir.path())).unwrap();
        prune(dir.path(), &settings(live.len() + 40 * 1024));
        let total: u64 = sealed(dir.path()).iter().map(|s| s.1).sum::<u64>() + live.len();
        assert!(total <= live.len() + 40 * 1024, "{total}");
        assert_eq!(std::fs::metadata(path(dir.path())).unwrap().ino(), live.ino(), "the live segment is never rewritten");
        let newest = ids(dir.path());
        assert_eq!(newest[0], "run-000199");
        assert!(newest.len() < 200);
    }
}
