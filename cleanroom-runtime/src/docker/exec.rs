//! Inside a container: commands, files and output.

use std::time::Duration;

use futures_util::StreamExt;
use testcontainers::bollard::models::ExecConfig;
use testcontainers::bollard::query_parameters::{DownloadFromContainerOptionsBuilder, LogsOptionsBuilder};

use super::{Docker, DockerError};
use crate::engine::ExecOutput;

impl Docker {
    /// Runs a command inside the container and waits for it.
    pub(crate) async fn exec(&self, id: &str, cmd: &[String]) -> Result<ExecOutput, DockerError> {
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd.to_vec()),
            ..Default::default()
        };
        let exec = self.client.create_exec(id, config).await.map_err(|e| DockerError::from_bollard("exec", e))?;
        let started = self.client.start_exec(&exec.id, None).await.map_err(|e| DockerError::from_bollard("exec", e))?;
        let (mut stdout, mut stderr) = (String::new(), String::new());
        if let testcontainers::bollard::exec::StartExecResults::Attached { mut output, .. } = started {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|e| DockerError::from_bollard("exec", e))? {
                    testcontainers::bollard::container::LogOutput::StdErr { message } => {
                        stderr.push_str(&String::from_utf8_lossy(&message))
                    }
                    other => stdout.push_str(&String::from_utf8_lossy(&other.into_bytes())),
                }
            }
        }
        // The stream ends when the process does, but its exit code may be
        // recorded a moment later.
        for _ in 0..50 {
            let info = self.client.inspect_exec(&exec.id).await.map_err(|e| DockerError::from_bollard("exec", e))?;
            if info.running != Some(true) {
                if let Some(code) = info.exit_code {
                    return Ok(ExecOutput { exit_code: code, stdout, stderr });
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(DockerError::new("exec", None, format!("`{}` did not report an exit code", cmd.join(" "))))
    }

    /// Whether `path` exists in the container (asks the engine's archive API,
    /// so it works in images without a shell).
    pub(crate) async fn path_exists(&self, id: &str, path: &str) -> Result<bool, DockerError> {
        let options = DownloadFromContainerOptionsBuilder::new().path(path).build();
        let mut stream = self.client.download_from_container(id, Some(options));
        match stream.next().await.map(|r| r.map_err(|e| DockerError::from_bollard("read archive", e))) {
            Some(Ok(_)) | None => Ok(true),
            Some(Err(e)) if e.is_not_found() => Ok(false),
            Some(Err(e)) => Err(e),
        }
    }

    /// The container's output (stdout and stderr, interleaved), the last
    /// `tail` lines or all of it.
    pub(crate) async fn logs(&self, id: &str, tail: Option<usize>) -> Result<String, DockerError> {
        let tail = tail.map_or_else(|| "all".to_string(), |n| n.to_string());
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).tail(&tail).build();
        let mut stream = self.client.logs(id, Some(options));
        let mut out = String::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| DockerError::from_bollard("read logs", e))?;
            out.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        Ok(out)
    }
}
