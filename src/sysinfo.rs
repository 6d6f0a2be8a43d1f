//! Facts about where opsctl runs: user, host, state directory, terminal.

use std::io::IsTerminal;
use std::path::PathBuf;

/// The login name: `$USER`, `$LOGNAME`, else the passwd entry of the uid (read once per
/// process: a fleet's runs all ask).
pub fn user() -> String {
    static USER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    USER.get_or_init(user_uncached).clone()
}

fn user_uncached() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var)
            && !u.is_empty() {
                return u;
            }
    }
    // SAFETY: getuid has no preconditions; getpwuid returns a pointer into static storage
    // or null, read immediately.
    unsafe {
        let uid = libc::getuid();
        let pw = libc::getpwuid(uid);
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            return std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned();
        }
        format!("uid:{uid}")
    }
}

/// This machine's host name (read once per process).
pub fn hostname() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(hostname_uncached).clone()
}

fn hostname_uncached() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Where opsctl keeps its history and locks: `$OPSCTL_STATE_DIR`, else
/// `$XDG_STATE_HOME/opsctl`, else `~/.local/state/opsctl`.
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OPSCTL_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("opsctl");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/state/opsctl")
}

/// Whether standard error is a terminal (progress line, colour, prompts).
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}
