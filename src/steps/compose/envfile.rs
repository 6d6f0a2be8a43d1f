//! Env files as Compose reads them (`KEY=value`, `export KEY=value`, `#` comments), read and
//! rewritten in place — comments, order and other lines kept — and written whole. What
//! `compose.env_rotate` and `compose.deploy` change.

use std::path::Path;

use crate::vocab::StepError;

/// `KEY=value` or `export KEY=value`: the key and the raw value; `None` for comments and
/// other lines.
fn assignment(line: &str) -> Option<(&str, &str)> {
    let l = line.trim_start();
    if l.starts_with('#') {
        return None;
    }
    let (k, v) = l.strip_prefix("export ").unwrap_or(l).split_once('=')?;
    Some((k.trim(), v))
}

/// The keys assigned, in order.
pub fn keys_in(text: &str) -> Vec<String> {
    text.lines().filter_map(assignment).map(|(k, _)| k.to_string()).collect()
}

/// The value of `key` (the last assignment wins, as compose reads it), unquoted.
pub fn env_value(text: &str, key: &str) -> Option<String> {
    text.lines().filter_map(assignment).rfind(|(k, _)| *k == key).map(|(_, v)| {
        let v = v.trim();
        v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\''))).unwrap_or(v).to_string()
    })
}

/// The text with each `(key, value)` set: assignments replaced in place (`export` kept),
/// missing keys appended.
pub fn set_values(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut done = vec![false; values.len()];
    for line in text.lines() {
        match assignment(line).and_then(|(k, _)| values.iter().position(|(vk, _)| *vk == k)) {
            Some(i) => {
                let export = if line.trim_start().starts_with("export ") { "export " } else { "" };
                out.push_str(&format!("{export}{}={}", values[i].0, values[i].1));
                done[i] = true;
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    for (i, (k, v)) in values.iter().enumerate() {
        if !done[i] {
            out.push_str(&format!("{k}={v}\n"));
        }
    }
    out
}

/// The file's text and permission bits.
pub fn read(path: &Path) -> Result<(String, u32), StepError> {
    use std::os::unix::fs::PermissionsExt;
    let text =
        std::fs::read_to_string(path).map_err(|e| StepError::invalid(format!("cannot read env file {}: {}", path.display(), crate::error::io_reason(&e))))?;
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o600);
    Ok((text, mode))
}

/// Writes `text` to `path` whole: a temporary file with `mode`, fsynced, renamed.
pub fn write_atomic(path: &Path, text: &str, mode: u32) -> Result<(), StepError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("opsctl-tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        StepError::error(format!("cannot write {}: {}", path.display(), crate::error::io_reason(&e)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewriting_keeps_comments_order_and_other_keys() {
        let text = "# db\nDB_PASSWORD=old-pass\nexport API_KEY=old-key\nOTHER=1\n#DB_PASSWORD=commented\n";
        assert_eq!(
            set_values(text, &[("DB_PASSWORD", "n3w-db-pass"), ("API_KEY", "n3w-api-key")]),
            "# db\nDB_PASSWORD=n3w-db-pass\nexport API_KEY=n3w-api-key\nOTHER=1\n#DB_PASSWORD=commented\n"
        );
        assert_eq!(keys_in(text), ["DB_PASSWORD", "API_KEY", "OTHER"]);
    }

    #[test]
    fn env_values_are_read_and_set_in_place() {
        let text = "# images\nAPI_IMAGE=api:1\nexport DB=x\nAPI_IMAGE_PREVIOUS=\"api:0\"\n";
        assert_eq!(env_value(text, "API_IMAGE").as_deref(), Some("api:1"));
        assert_eq!(env_value(text, "API_IMAGE_PREVIOUS").as_deref(), Some("api:0"));
        assert_eq!(env_value(text, "NOPE"), None);
        assert_eq!(
            set_values(text, &[("API_IMAGE", "api:2"), ("API_IMAGE_PREVIOUS", "api:1")]),
            "# images\nAPI_IMAGE=api:2\nexport DB=x\nAPI_IMAGE_PREVIOUS=api:1\n"
        );
        assert_eq!(set_values("A=1\n", &[("B", "2")]), "A=1\nB=2\n");
    }
}
