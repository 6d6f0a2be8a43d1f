//! Random values for new secrets, from the operating system's CSPRNG.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::vocab::StepError;

/// The characters a generated value is made of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Charset {
    #[default]
    Alphanumeric,
    Hex,
    /// URL-safe base64 characters.
    Base64url,
}

impl Charset {
    fn chars(self) -> &'static [u8] {
        match self {
            Charset::Alphanumeric => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            Charset::Hex => b"0123456789abcdef",
            Charset::Base64url => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        }
    }
}

/// A random string from the OS CSPRNG, without modulo bias.
pub fn random_value(len: usize, charset: Charset) -> Result<String, StepError> {
    use aws_lc_rs::rand::SecureRandom;
    let chars = charset.chars();
    let limit = 256 - (256 % chars.len());
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill(&mut buf).map_err(|_| StepError::error("the system's random number generator failed"))?;
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(chars[b as usize % chars.len()] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_values_use_the_charset() {
        let v = random_value(40, Charset::Hex).unwrap();
        assert_eq!(v.len(), 40);
        assert!(v.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(random_value(32, Charset::Alphanumeric).unwrap(), random_value(32, Charset::Alphanumeric).unwrap());
    }
}
