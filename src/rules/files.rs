//! Image files named by rules (`image: {file}`, `miniprogrampage: {thumb_file}`, SPEC §10):
//! where they are and whether WeChat will take them.
//!
//! The one part of rule loading besides the folder walk that touches the disk: it checks, at
//! load, that the file exists under the rules folder, is a JPG or PNG (by its first bytes, not
//! its name) and is within WeChat's upload size limit. The file is read again, and hashed, when
//! it is sent (so an edited file is uploaded again); see `docs/media.md` for the limits and their
//! sources.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// WeChat's size limit for an image uploaded as temporary media by an Official Account
/// (`cgi-bin/media/upload`, type image: 2 MB).
pub const MAX_IMAGE_BYTES_OFFICIAL_ACCOUNT: u64 = 2 * 1024 * 1024;

/// The size limit kefu applies to a Mini Program's customer-service upload (WeChat's page names
/// no number; kefu holds it to the Official Account's documented 2 MB).
pub const MAX_IMAGE_BYTES_MINIPROGRAM: u64 = 2 * 1024 * 1024;

/// The kinds of image WeChat's customer-service messages take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
}

impl ImageKind {
    /// Recognises a JPG or PNG by its first bytes.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else {
            None
        }
    }

    /// The MIME type of the upload.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
        }
    }
}

/// Resolves `name` against the rules folder `dir`, refusing a path that leaves it.
pub fn resolve(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let relative = Path::new(name.trim());
    if name.trim().is_empty() {
        return Err("empty file name".into());
    }
    if relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "{name:?} must be a path inside the rules folder (relative, without `..`)"
        ));
    }
    Ok(dir.join(relative))
}

/// Checks the image file `name` (relative to `dir`) and returns its full path.
pub fn check_image(dir: &Path, name: &str, max_bytes: u64) -> Result<PathBuf, String> {
    let path = resolve(dir, name)?;
    let meta =
        std::fs::metadata(&path).map_err(|e| format!("image file {name:?} cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err(format!("image file {name:?} is not a file"));
    }
    if meta.len() > max_bytes {
        return Err(format!(
            "image file {name:?} is {} bytes; WeChat takes at most {max_bytes} bytes",
            meta.len()
        ));
    }
    let mut head = [0u8; 8];
    let mut file = std::fs::File::open(&path)
        .map_err(|e| format!("image file {name:?} cannot be read: {e}"))?;
    let n = file
        .read(&mut head)
        .map_err(|e| format!("image file {name:?} cannot be read: {e}"))?;
    if ImageKind::sniff(head.get(..n).unwrap_or(&[])).is_none() {
        return Err(format!(
            "image file {name:?} is not a JPG or PNG (WeChat takes only those)"
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn jpg_and_png_pass_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), PNG).unwrap();
        std::fs::write(dir.path().join("b.jpg"), [0xFF, 0xD8, 0xFF, 0xE0]).unwrap();
        std::fs::write(dir.path().join("c.png"), b"GIF89a").unwrap();
        assert!(check_image(dir.path(), "a.png", 100).is_ok());
        assert!(check_image(dir.path(), "b.jpg", 100).is_ok());
        let err = check_image(dir.path(), "c.png", 100).unwrap_err();
        assert!(err.contains("not a JPG or PNG"), "{err}");
        let err = check_image(dir.path(), "missing.png", 100).unwrap_err();
        assert!(err.contains("cannot be read"), "{err}");
        let err = check_image(dir.path(), "a.png", 4).unwrap_err();
        assert!(err.contains("at most 4 bytes"), "{err}");
    }

    #[test]
    fn paths_outside_the_folder_are_refused() {
        let dir = Path::new("/rules");
        assert!(resolve(dir, "../etc/passwd").is_err());
        assert!(resolve(dir, "/etc/passwd").is_err());
        assert_eq!(
            resolve(dir, "images/a.png").unwrap(),
            Path::new("/rules/images/a.png")
        );
    }
}
