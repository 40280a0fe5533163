//! Opening what a request maps to: a file streamed through a buffered reader (opened
//! strictly beneath its directory, see [`super::beneath`]) or a generated file in memory.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::beneath::open_beneath;
use super::metrics::Refusal;
use super::path::{FIRST_STAGE, Generated, Target};
use super::resolve::SlotBoot;
use crate::bootfiles::{render_cmdline, render_config};

/// Read buffer per transfer: a few dozen blocks per disk read, whatever the block size.
const READ_BUFFER: usize = 64 * 1024;
/// On-disk `config.txt`/`cmdline.txt` larger than this are not believed.
const MAX_TEXT: u64 = 1024 * 1024;

/// The bytes of one transfer and their exact size (for `tsize`).
#[derive(Debug)]
pub struct Source {
    pub size: u64,
    body: Body,
}

#[derive(Debug)]
enum Body {
    File(BufReader<File>),
    Memory { bytes: Vec<u8>, pos: usize },
}

/// Why a target could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("refused: {}", .0.name())]
    Refused(Refusal),
    #[error("generated file could not be rendered")]
    Render(#[from] crate::bootfiles::BootfileError),
    #[error("could not read {path}")]
    Io { path: PathBuf, source: io::Error },
}

impl Source {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Source { size: bytes.len() as u64, body: Body::Memory { bytes, pos: 0 } }
    }

    /// Fills `buf` completely unless the end of the file comes first; returns the count.
    /// Blocking: transfers run on their own thread (see [`super::transfer`]).
    pub fn read_block(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.body {
            Body::Memory { bytes, pos } => {
                let rest = bytes.get(*pos..).unwrap_or_default();
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                *pos += n;
                Ok(n)
            }
            Body::File(reader) => {
                let mut filled = 0;
                while filled < buf.len() {
                    match reader.read(&mut buf[filled..])? {
                        0 => break,
                        n => filled += n,
                    }
                }
                Ok(filled)
            }
        }
    }
}

/// Opens `target` for `slot`; `firmware_dir` holds the shared `bootcode.bin`.
pub async fn open(
    target: &Target,
    slot: &SlotBoot,
    firmware_dir: &Path,
) -> Result<Source, OpenError> {
    match target {
        Target::FirstStage => open_file(firmware_dir, Path::new(FIRST_STAGE)).await,
        Target::Slot(rel) => open_file(&slot.boot_dir, rel).await,
        Target::Generated(Generated::Cmdline) => {
            let image = read_text(&slot.boot_dir, "cmdline.txt").await?;
            Ok(Source::from_bytes(render_cmdline(&slot.params, image.as_deref())?.into_bytes()))
        }
        Target::Generated(Generated::Config) => {
            let on_disk = read_text(&slot.boot_dir, "config.txt").await?;
            Ok(Source::from_bytes(render_config(on_disk.as_deref(), &slot.params)?.into_bytes()))
        }
    }
}

/// Opens `base/rel` on a blocking thread through [`open_beneath`], then runs `then` on
/// the open file there too.
async fn on_blocking_thread<T: Send + 'static>(
    base: &Path,
    rel: &Path,
    then: impl FnOnce(File, u64) -> Result<T, OpenError> + Send + 'static,
) -> Result<T, OpenError> {
    let (base, rel) = (base.to_path_buf(), rel.to_path_buf());
    let path = base.join(&rel);
    let job = tokio::task::spawn_blocking(move || {
        let (file, size) = open_beneath(&base, &rel)?;
        then(file, size)
    });
    job.await.unwrap_or_else(|e| Err(OpenError::Io { path, source: io::Error::other(e) }))
}

async fn open_file(base: &Path, rel: &Path) -> Result<Source, OpenError> {
    on_blocking_thread(base, rel, |file, size| {
        let body = Body::File(BufReader::with_capacity(READ_BUFFER, file));
        Ok(Source { size, body })
    })
    .await
}

/// Reads a small text file of the boot directory; `None` when it does not exist.
async fn read_text(base: &Path, name: &str) -> Result<Option<String>, OpenError> {
    let path = base.join(name);
    let read = on_blocking_thread(base, Path::new(name), move |file, size| {
        if size > MAX_TEXT {
            let source = io::Error::other("file too large to edit");
            return Err(OpenError::Io { path, source });
        }
        let mut bytes = Vec::new();
        file.take(MAX_TEXT)
            .read_to_end(&mut bytes)
            .map_err(|source| OpenError::Io { path, source })?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    });
    match read.await {
        Ok(text) => Ok(Some(text)),
        Err(OpenError::Refused(Refusal::NotFound)) => Ok(None),
        Err(other) => Err(other),
    }
}
