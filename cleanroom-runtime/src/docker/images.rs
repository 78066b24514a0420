//! Images: present, pulled, or refused by the pull policy.

use futures_util::StreamExt;
use testcontainers::bollard::query_parameters::CreateImageOptionsBuilder;

use super::{Docker, DockerError};

/// Whether and when images are pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull images that are not on this machine (the default).
    #[default]
    Missing,
    /// Pull every image once per run, even one that is here (a moving tag
    /// such as `latest`); a failed pull is an error.
    Always,
    /// Never pull: a missing image is an error at once.
    Never,
}

impl PullPolicy {
    /// The policy named `text` in `run.pull` / `CLEANROOM_PULL`.
    pub fn parse(text: &str) -> Option<PullPolicy> {
        match text {
            "" | "missing" => Some(PullPolicy::Missing),
            "always" => Some(PullPolicy::Always),
            "never" => Some(PullPolicy::Never),
            _ => None,
        }
    }
}

/// What [`Docker::ensure_image`] found.
#[derive(Debug)]
pub(crate) enum ImageError {
    /// `PullPolicy::Never` and the image is not here.
    PullingOff,
    /// The pull failed.
    Pull(DockerError),
}

/// `name[:tag]` split the way Docker reads it (a registry port is not a tag).
pub(crate) fn split_image(image: &str) -> (String, String) {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (image[..slash + i].to_string(), image[slash + i + 1..].to_string()),
        None => (image.to_string(), "latest".to_string()),
    }
}

impl Docker {
    /// Makes sure the image is on this machine, pulling it if the policy
    /// allows (`missing`, `never`; `always` is the run layer's, which pulls
    /// once per run); `true` when it had to be pulled.
    pub(crate) async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<bool, ImageError> {
        if self.has_image(image).await {
            return Ok(false);
        }
        if policy == PullPolicy::Never {
            return Err(ImageError::PullingOff);
        }
        self.pull(image).await.map_err(ImageError::Pull)?;
        Ok(true)
    }

    /// Whether the image is on this machine.
    pub(crate) async fn has_image(&self, image: &str) -> bool {
        self.client.inspect_image(image).await.is_ok()
    }

    /// The image's size in bytes; `None` if it is not here.
    pub(crate) async fn image_size(&self, image: &str) -> Result<Option<u64>, DockerError> {
        match self.client.inspect_image(image).await.map_err(|e| DockerError::from_bollard("inspect image", e)) {
            Ok(info) => Ok(Some(info.size.unwrap_or(0).max(0) as u64)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the image (this tag: its layers go when no other tag holds
    /// them); refused while a container uses it.
    pub(crate) async fn remove_image(&self, image: &str) -> Result<(), DockerError> {
        use testcontainers::bollard::query_parameters::RemoveImageOptions;
        match self
            .client
            .remove_image(image, None::<RemoveImageOptions>, None)
            .await
            .map_err(|e| DockerError::from_bollard("remove image", e))
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Pulls the image, present or not.
    pub(crate) async fn pull(&self, image: &str) -> Result<(), DockerError> {
        let (name, tag) = split_image(image);
        let options = CreateImageOptionsBuilder::new().from_image(&name).tag(&tag).build();
        let mut pull = self.client.create_image(Some(options), None, None);
        while let Some(step) = pull.next().await {
            step.map_err(|e| DockerError::from_bollard("pull image", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::split_image;

        #[test]
        fn split_images_like_docker() {
            assert_eq!(split_image("postgres:17-alpine"), ("postgres".into(), "17-alpine".into()));
            assert_eq!(split_image("redis"), ("redis".into(), "latest".into()));
            assert_eq!(
                split_image("cleanroom-offline/busybox:1.35"),
                ("cleanroom-offline/busybox".into(), "1.35".into())
            );
            assert_eq!(split_image("127.0.0.1:5000/team/pg"), ("127.0.0.1:5000/team/pg".into(), "latest".into()));
            assert_eq!(split_image("127.0.0.1:5000/team/pg:15"), ("127.0.0.1:5000/team/pg".into(), "15".into()));
        }
    }
}
