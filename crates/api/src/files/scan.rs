//! Virus scanning by ClamAV's clamd over its INSTREAM protocol: the
//! command `zINSTREAM\0`, the file in chunks each prefixed by its length
//! (4 bytes, network order), a zero length to end, and one answer ended by
//! a NUL: `stream: OK`, `stream: NAME FOUND`, or `... ERROR`. Only `OK` is
//! clean; a detection (heuristic alerts such as an encrypted archive or
//! exceeded limits are detections too, when clamd is set to raise them),
//! an error (the stream too large for clamd's StreamMaxLength...) is not.
//! clamd unreachable or too slow: the caller refuses the upload (fail
//! closed).
//!
//! The protocol is a few lines over a socket; no crate is needed for it.

use std::path::Path;

use config::{Clamd, Scanning};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What clamd said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Clean,
    /// Found something, or could not scan it: what clamd said.
    NotClean(String),
    /// clamd could not be asked (down, too slow, or an answer not of its
    /// protocol).
    Unavailable(String),
}

const CHUNK: usize = 64 * 1024;
/// The longest answer read.
const MAX_ANSWER: usize = 1024;

/// Scans the file at `path`.
pub(crate) async fn scan(s: &Scanning, path: &Path) -> Verdict {
    let run = async {
        let file = tokio::fs::File::open(path).await?;
        match &s.clamd {
            Clamd::Unix(p) => {
                let mut c = tokio::net::UnixStream::connect(p).await?;
                instream(&mut c, file).await
            }
            Clamd::Tcp(a) => {
                let mut c = tokio::net::TcpStream::connect(a).await?;
                instream(&mut c, file).await
            }
        }
    };
    match tokio::time::timeout(s.timeout, run).await {
        Err(_) => Verdict::Unavailable(format!(
            "clamd did not answer within {} s",
            s.timeout.as_secs()
        )),
        Ok(Err(e)) => Verdict::Unavailable(format!("clamd at {}: {e}", s.clamd)),
        Ok(Ok(answer)) => judge(&answer),
    }
}

async fn instream<C: AsyncRead + AsyncWrite + Unpin>(
    c: &mut C,
    mut file: tokio::fs::File,
) -> std::io::Result<String> {
    c.write_all(b"zINSTREAM\0").await?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).await?;
        let len = u32::try_from(n).map_err(std::io::Error::other)?;
        c.write_all(&len.to_be_bytes()).await?;
        if n == 0 {
            break;
        }
        // clamd answers (and closes) early when the stream passes its
        // limit: the answer is read below.
        if let Err(e) = c.write_all(&buf[..n]).await {
            if e.kind() == std::io::ErrorKind::BrokenPipe
                || e.kind() == std::io::ErrorKind::ConnectionReset
            {
                break;
            }
            return Err(e);
        }
    }
    c.flush().await?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 256];
    while answer.len() < MAX_ANSWER && !answer.contains(&0) {
        let n = c.read(&mut byte).await?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&byte[..n]);
    }
    let end = answer.iter().position(|b| *b == 0).unwrap_or(answer.len());
    Ok(String::from_utf8_lossy(&answer[..end]).trim().to_owned())
}

/// Reads clamd's answer.
fn judge(answer: &str) -> Verdict {
    if answer == "stream: OK" {
        return Verdict::Clean;
    }
    if let Some(found) = answer
        .strip_prefix("stream: ")
        .and_then(|a| a.strip_suffix(" FOUND"))
    {
        return Verdict::NotClean(format!("the virus scanner found {found}"));
    }
    if answer.ends_with("ERROR") {
        return Verdict::NotClean(format!("the virus scanner could not scan it: {answer}"));
    }
    Verdict::Unavailable(format!("clamd answered {answer:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ok_is_clean() {
        assert_eq!(judge("stream: OK"), Verdict::Clean);
        assert_eq!(
            judge("stream: Eicar-Test-Signature FOUND"),
            Verdict::NotClean("the virus scanner found Eicar-Test-Signature".into())
        );
        assert_eq!(
            judge("stream: Heuristics.Encrypted.Zip FOUND"),
            Verdict::NotClean("the virus scanner found Heuristics.Encrypted.Zip".into())
        );
        assert!(matches!(
            judge("INSTREAM size limit exceeded. ERROR"),
            Verdict::NotClean(_)
        ));
        assert!(matches!(judge(""), Verdict::Unavailable(_)));
        assert!(matches!(judge("PONG"), Verdict::Unavailable(_)));
    }

    #[tokio::test]
    async fn the_stream_is_framed_as_clamd_reads_it() {
        // A clamd stand-in on a socket pair: reads the command and the
        // chunks, answers as clamd would.
        let dir = std::env::temp_dir().join(format!("parapet-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, vec![7u8; CHUNK + 5]).unwrap();
        let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(async move {
            let mut cmd = [0u8; 10];
            theirs.read_exact(&mut cmd).await.unwrap();
            assert_eq!(&cmd, b"zINSTREAM\0");
            let mut total = 0;
            loop {
                let mut len = [0u8; 4];
                theirs.read_exact(&mut len).await.unwrap();
                let n = u32::from_be_bytes(len) as usize;
                if n == 0 {
                    break;
                }
                let mut data = vec![0u8; n];
                theirs.read_exact(&mut data).await.unwrap();
                total += n;
            }
            theirs.write_all(b"stream: OK\0").await.unwrap();
            total
        });
        let f = tokio::fs::File::open(&file).await.unwrap();
        let answer = instream(&mut ours, f).await.unwrap();
        assert_eq!(answer, "stream: OK");
        assert_eq!(server.await.unwrap(), CHUNK + 5);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
