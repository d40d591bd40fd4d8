//! A labelled face set: a folder of `<identity>/<image>` files.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One person of a set and their images, in file-name order.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub images: Vec<PathBuf>,
}

/// Every identity of a set, in name order.
#[derive(Debug, Clone)]
pub struct LabelledSet {
    pub root: PathBuf,
    pub identities: Vec<Identity>,
}

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "pgm", "bmp", "ppm"];

impl LabelledSet {
    /// Read `dir`: every sub-folder is an identity, every image file in it one of their images. Other files
    /// (a README, a CSV) are left out; an identity with no image is an error.
    pub fn read(dir: &Path) -> Result<LabelledSet> {
        let mut identities = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut images = Vec::new();
            for file in std::fs::read_dir(entry.path())? {
                let path = file?.path();
                let ext = path
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase())
                    .unwrap_or_default();
                if path.is_file() && IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                    images.push(path);
                }
            }
            if images.is_empty() {
                bail!("{}: identity {name} has no image", dir.display());
            }
            images.sort();
            identities.push(Identity { name, images });
        }
        if identities.len() < 2 {
            bail!(
                "{}: a labelled set needs at least two identities (folders of images), found {}",
                dir.display(),
                identities.len()
            );
        }
        identities.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(LabelledSet {
            root: dir.to_path_buf(),
            identities,
        })
    }

    /// The first `people` identities and the first `per_person` images of each (a quick subset).
    pub fn subset(&self, people: usize, per_person: usize) -> LabelledSet {
        LabelledSet {
            root: self.root.clone(),
            identities: self
                .identities
                .iter()
                .take(people)
                .map(|i| Identity {
                    name: i.name.clone(),
                    images: i.images.iter().take(per_person).cloned().collect(),
                })
                .collect(),
        }
    }

    pub fn image_count(&self) -> usize {
        self.identities.iter().map(|i| i.images.len()).sum()
    }
}
