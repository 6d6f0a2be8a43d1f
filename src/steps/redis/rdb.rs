//! RDB files, as `backup.verify` checks them: the `REDIS0010` header, the EOF opcode, and the
//! CRC64 (Jones) of everything before the last 8 bytes, which Redis writes there (little
//! endian) unless `rdbchecksum no`.

use std::path::Path;

use tokio::io::AsyncReadExt;

use crate::vocab::{ErrorClass, StepError};

/// The reflected polynomial of CRC-64/Jones, which Redis uses.
const POLY: u64 = 0x95ac_9329_ac4b_c9b5;

const fn table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ POLY } else { crc >> 1 };
            bit += 1;
        }
        t[i] = crc;
        i += 1;
    }
    t
}

static TABLE: [u64; 256] = table();

/// CRC-64/Jones, continued from `crc`.
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    for &b in data {
        crc = TABLE[((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Checks a staged RDB file; says its version and how its checksum went.
pub async fn check(path: &Path, backup: &str) -> Result<String, StepError> {
    let bad = |why: String| StepError::new(ErrorClass::Failed, format!("dump.rdb of backup {backup} {why}"));
    let mut f = tokio::fs::File::open(path).await.map_err(|e| StepError::error(format!("cannot open {}: {}", path.display(), crate::error::io_reason(&e))))?;
    let size = f.metadata().await.map_err(|e| StepError::error(format!("{}: {e}", path.display())))?.len();
    if size < 18 {
        return Err(bad(format!("is {size} bytes: too short to be an RDB file")));
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut crc = 0u64;
    let mut read = 0u64;
    let mut header = Vec::new();
    let mut tail = Vec::with_capacity(9);
    let body = size - 8;
    loop {
        let n = f.read(&mut buf).await.map_err(|e| StepError::error(format!("reading {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if header.len() < 9 {
            header.extend(chunk.iter().take(9 - header.len()));
        }
        // Everything before the checksum goes into the CRC; the EOF opcode and checksum are kept.
        let in_body = (body.saturating_sub(read)).min(n as u64) as usize;
        crc = crc64(crc, &chunk[..in_body]);
        tail.extend_from_slice(&chunk[n.saturating_sub(9)..]);
        if tail.len() > 9 {
            tail.drain(..tail.len() - 9);
        }
        read += n as u64;
    }
    if read != size {
        return Err(bad(format!("changed while it was read ({read} of {size} bytes)")));
    }
    let version = std::str::from_utf8(&header).ok().and_then(|h| h.strip_prefix("REDIS")).and_then(|v| v.parse::<u32>().ok());
    let Some(version) = version else {
        return Err(bad(format!("does not start with an RDB header (REDIS0010) but {:?}", String::from_utf8_lossy(&header))));
    };
    if tail.len() != 9 || tail[0] != 0xff {
        return Err(bad("does not end with the RDB EOF opcode: it is truncated".into()));
    }
    let stored = u64::from_le_bytes(tail[1..9].try_into().expect("8 bytes"));
    if stored == 0 {
        return Ok(format!("RDB version {version}, written without a checksum (rdbchecksum no)"));
    }
    if stored != crc {
        return Err(bad(format!("fails its CRC64 (stored {stored:016x}, computed {crc:016x}): it is corrupt")));
    }
    Ok(format!("RDB version {version}, CRC64 matches"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_is_jones_as_redis_computes_it() {
        // The check value Redis's own crc64 test uses.
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        assert_eq!(crc64(crc64(0, b"1234"), b"56789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[tokio::test]
    async fn rdb_files_are_checked_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut rdb = b"REDIS0010\xfa\x05hello\x05world".to_vec();
        rdb.push(0xff);
        let crc = crc64(0, &rdb);
        rdb.extend_from_slice(&crc.to_le_bytes());
        let good = dir.path().join("good.rdb");
        std::fs::write(&good, &rdb).unwrap();
        assert_eq!(check(&good, "b1").await.unwrap(), "RDB version 10, CRC64 matches");
        let mut corrupt = rdb.clone();
        corrupt[12] ^= 1;
        std::fs::write(&good, &corrupt).unwrap();
        assert!(check(&good, "b1").await.unwrap_err().message.contains("fails its CRC64"));
        std::fs::write(&good, &rdb[..rdb.len() - 3]).unwrap();
        assert!(check(&good, "b1").await.unwrap_err().message.contains("does not end with the RDB EOF opcode"));
        std::fs::write(&good, b"NOTANRDBFILE-------------").unwrap();
        assert!(check(&good, "b1").await.unwrap_err().message.contains("does not start with an RDB header"));
    }
}
