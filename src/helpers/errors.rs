//! Errors as operators read them: an error and all its causes, and the first cause of a
//! given type (a TLS or I/O error deep inside an HTTP, AWS or PostgreSQL client's error).

/// An error and its causes, joined: reqwest's own text is only the outermost layer.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// The first error of type `T` among `err` and its causes, looking inside `io::Error`
/// wrappers too (their `source()` skips the error they wrap).
pub fn find<'a, T: std::error::Error + 'static>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut stack: Vec<&'a (dyn std::error::Error + 'static)> = vec![err];
    while let Some(e) = stack.pop() {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            stack.push(inner);
        }
        if let Some(next) = e.source() {
            stack.push(next);
        }
    }
    None
}
