//! The live progress line on a terminal: which steps are running and for how long.
//! Drawn on standard error, only when it is a TTY; cleared before the report prints.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Event, Sink};

/// Set while a prompt is on screen, so the line does not draw over it.
static PAUSED: AtomicBool = AtomicBool::new(false);

/// Pauses (and clears) or resumes the progress line.
pub fn pause(on: bool) {
    PAUSED.store(on, Ordering::Relaxed);
}

#[derive(Default)]
struct State {
    running: Vec<(String, Instant)>,
    done: usize,
    total: usize,
}

pub struct Progress {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Progress {
    pub fn new() -> Progress {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            const SPIN: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut tick = 0usize;
            // Only draw for runs that last: quick runs never flash a line.
            std::thread::sleep(Duration::from_millis(300));
            while !st.load(Ordering::Relaxed) {
                if PAUSED.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                let line = {
                    let state = s.lock().unwrap_or_else(|e| e.into_inner());
                    let mut names: Vec<String> = state
                        .running
                        .iter()
                        .take(3)
                        .map(|(n, t)| format!("{n} {}", crate::duration::short(t.elapsed())))
                        .collect();
                    if state.running.len() > 3 {
                        names.push(format!("+{} more", state.running.len() - 3));
                    }
                    format!("{} [{}/{}] {}", SPIN[tick % SPIN.len()], state.done, state.total, names.join(", "))
                };
                let width = terminal_width().unwrap_or(80) as usize;
                let line: String = line.chars().take(width.saturating_sub(1)).collect();
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[K{}", crate::secret::scrub(&line));
                let _ = err.flush();
                tick += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        });
        Progress { state, stop, thread: Mutex::new(Some(thread)) }
    }

    fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Sink for Progress {
    fn event(&self, event: &Event<'_>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::RunStarted { steps, .. } => state.total = *steps,
            Event::StepStarted { id, .. } => state.running.push((id.to_string(), Instant::now())),
            Event::StepFinished(r) => {
                state.running.retain(|(n, _)| *n != r.id);
                state.done += 1;
                state.total = state.total.max(state.done);
            }
            Event::RunFinished(_) => {
                drop(state);
                self.finish();
            }
            Event::StepRetrying { .. } => {}
        }
    }
}

/// The terminal's width in columns, if standard error is a terminal.
pub fn terminal_width() -> Option<u16> {
    // SAFETY: TIOCGWINSZ fills a winsize struct.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            return Some(ws.ws_col);
        }
        if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0 {
            return Some(ws.ws_col);
        }
    }
    None
}
