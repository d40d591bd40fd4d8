//! What an embedding run found in each image, one JSON line per image, in the format scripts/vsdlib/dlib_peer.py
//! also writes: `{"file": "...", "faces": [{"bbox": [l, t, w, h], "score": s, "embedding": [...]}]}`. The identity
//! is the name of the image's folder.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FaceRecord {
    pub bbox: [f32; 4],
    /// The detector's five landmarks (right eye, left eye, nose, right and left mouth corners), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landmarks: Option<[[f32; 2]; 5]>,
    #[serde(default = "one")]
    pub score: f32,
    pub embedding: Vec<f32>,
}

fn one() -> f32 {
    1.0
}

impl FaceRecord {
    /// What the engine found, as recorded.
    pub fn from_analysed(face: facekey_core::engine::AnalysedFace) -> FaceRecord {
        FaceRecord {
            bbox: face.face.bbox,
            landmarks: Some(face.face.landmarks),
            score: face.face.score,
            embedding: face.embedding.0,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ImageRecord {
    pub file: PathBuf,
    pub faces: Vec<FaceRecord>,
}

impl ImageRecord {
    /// The identity: the name of the folder the image is in.
    pub fn identity(&self) -> String {
        self.file
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The image's file name, without its folder.
    pub fn name(&self) -> String {
        self.file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

pub fn write(path: &Path, records: &[ImageRecord]) -> Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("{}", path.display()))?,
    );
    for r in records {
        serde_json::to_writer(&mut out, r)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

pub fn read(path: &Path) -> Result<Vec<ImageRecord>> {
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line).with_context(|| format!("{}:{}", path.display(), n + 1))?,
        );
    }
    Ok(out)
}
