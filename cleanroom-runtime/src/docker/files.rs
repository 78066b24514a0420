//! Small files inside a container, through the engine's archive API (so no
//! shell is needed in the image), and the engine's own clock.

use futures_util::StreamExt;
use testcontainers::bollard::query_parameters::{DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder};

use super::{Docker, DockerError};

impl Docker {
    /// The engine's clock, seconds since the epoch: what times measured
    /// across machines that share one engine are compared on.
    pub(crate) async fn engine_time(&self) -> Result<i64, DockerError> {
        let info = self.client.info().await.map_err(|e| DockerError::from_bollard("info", e))?;
        let text = info.system_time.unwrap_or_default();
        crate::util::clock::parse_rfc3339(&text)
            .ok_or_else(|| DockerError::new("info", None, format!("the engine's time {text:?} is not RFC 3339")))
    }

    /// Writes `content` to `dir/name` in the container (replacing it).
    pub(crate) async fn write_file(&self, id: &str, dir: &str, name: &str, content: &[u8]) -> Result<(), DockerError> {
        let options = UploadToContainerOptionsBuilder::new().path(dir).build();
        let tar = tar_of_one(name, content, crate::util::clock::now_secs());
        self.client
            .upload_to_container(id, Some(options), testcontainers::bollard::body_full(tar.into()))
            .await
            .map_err(|e| DockerError::from_bollard("write file", e))
    }

    /// The content of the file at `path` in the container; `None` if there
    /// is none.
    pub(crate) async fn read_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>, DockerError> {
        let options = DownloadFromContainerOptionsBuilder::new().path(path).build();
        let mut stream = self.client.download_from_container(id, Some(options));
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk.map_err(|e| DockerError::from_bollard("read file", e)) {
                Ok(bytes) => tar.extend_from_slice(&bytes),
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            }
            if tar.len() > 1 << 20 {
                return Err(DockerError::new("read file", None, format!("{path} is larger than 1 MiB")));
            }
        }
        Ok(first_file_of_tar(&tar))
    }
}

/// A tar archive (ustar) holding one regular file.
pub(crate) fn tar_of_one(name: &str, content: &[u8], mtime: i64) -> Vec<u8> {
    let mut header = [0u8; 512];
    let name = name.as_bytes();
    header[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    let mut octal = |at: usize, width: usize, value: u64| {
        let text = format!("{value:0w$o}\0", w = width - 1);
        header[at..at + width].copy_from_slice(text.as_bytes());
    };
    octal(100, 8, 0o644);
    octal(108, 8, 0);
    octal(116, 8, 0);
    octal(124, 12, content.len() as u64);
    octal(136, 12, mtime.max(0) as u64);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    tar
}

/// The content of the first entry of a tar archive, if it is a regular file.
pub(crate) fn first_file_of_tar(tar: &[u8]) -> Option<Vec<u8>> {
    let header = tar.get(..512)?;
    if !matches!(header[156], b'0' | 0) {
        return None;
    }
    let size = std::str::from_utf8(&header[124..136]).ok()?.trim_matches(|c: char| c == '\0' || c == ' ');
    let size = usize::from_str_radix(size, 8).ok()?;
    tar.get(512..512 + size).map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        #[test]
        fn read_back_the_file_it_packs() {
            let tar = tar_of_one(".cleanroom-heartbeat", b"1795747200\n", 1_795_747_200);
            assert_eq!(tar.len() % 512, 0);
            assert_eq!(first_file_of_tar(&tar).as_deref(), Some(&b"1795747200\n"[..]));
        }

        #[test]
        fn write_a_header_whose_checksum_tar_accepts() {
            let tar = tar_of_one("f", b"x", 0);
            let stored = std::str::from_utf8(&tar[148..154]).unwrap();
            let mut header = tar[..512].to_vec();
            header[148..156].copy_from_slice(b"        ");
            let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
            assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        }

        #[test]
        fn find_nothing_in_what_is_not_a_file() {
            assert_eq!(first_file_of_tar(b"short"), None);
            let mut dir = tar_of_one("d", b"", 0);
            dir[156] = b'5';
            assert_eq!(first_file_of_tar(&dir), None);
        }
    }
}
