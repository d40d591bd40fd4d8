//! The cameras on this machine, for `facekey devices`: every `/dev/videoN` with its stable names,
//! USB identity, formats and sizes, and whether it looks infrared.
//!
//! Listing opens each node only to ask what it offers (no format is set, nothing streams), so it
//! is safe while another program uses a camera.

use std::path::{Path, PathBuf};

use super::negotiate::{self, FormatOffer};
use super::{capture_caps, enumerate, open_device};

/// One `/dev/videoN` node.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceEntry {
    pub node: PathBuf,
    /// Symbolic links to the node under `/dev/v4l/by-id` and `/dev/v4l/by-path`: names that
    /// survive re-plugging, better in a configuration than `/dev/videoN`.
    pub links: Vec<PathBuf>,
    pub usb: Option<UsbIdentity>,
    /// The node's description, or why it could not be read (permission denied, not a capture
    /// node: UVC cameras have a second node for metadata).
    pub details: Result<NodeDetails, String>,
}

/// What a capture node offers.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDetails {
    pub driver: String,
    pub card: String,
    pub bus: String,
    pub infrared: bool,
    pub offers: Vec<FormatOffer>,
}

/// USB vendor and product ids and serial number, from sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbIdentity {
    pub vendor: String,
    pub product: String,
    pub serial: Option<String>,
    pub name: Option<String>,
}

impl std::fmt::Display for UsbIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.vendor, self.product)?;
        if let Some(serial) = &self.serial {
            write!(f, " serial {serial}")?;
        }
        if let Some(name) = &self.name {
            write!(f, " ({name})")?;
        }
        Ok(())
    }
}

/// Every `/dev/videoN`, in numeric order.
pub fn list() -> Vec<DeviceEntry> {
    let links = stable_links(Path::new("/dev/v4l"));
    video_nodes(Path::new("/dev"))
        .into_iter()
        .map(|node| {
            let details = describe(&node);
            DeviceEntry {
                usb: usb_identity(&node),
                links: links_to(&links, &node),
                node,
                details,
            }
        })
        .collect()
}

fn describe(node: &Path) -> Result<NodeDetails, String> {
    let device = open_device(node).map_err(|e| strip_device(&e.to_string(), node))?;
    let caps = capture_caps(&device, node).map_err(|e| strip_device(&e.to_string(), node))?;
    let offers = enumerate(&device, negotiate::AUTO_SIZE);
    Ok(NodeDetails {
        driver: caps.driver,
        card: caps.card,
        bus: caps.bus,
        infrared: negotiate::looks_infrared(&offers),
        offers,
    })
}

/// "/dev/video1: reason" -> "reason": the listing already names the node.
fn strip_device(message: &str, node: &Path) -> String {
    let prefix = format!("{}: ", node.display());
    message.strip_prefix(&prefix).unwrap_or(message).to_owned()
}

/// `videoN` entries of `dir`, sorted by N (video2 before video10).
pub fn video_nodes(dir: &Path) -> Vec<PathBuf> {
    let mut nodes: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let n = name.to_str()?.strip_prefix("video")?.parse().ok()?;
            Some((n, entry.path()))
        })
        .collect();
    nodes.sort();
    nodes.into_iter().map(|(_, p)| p).collect()
}

/// (link, target) for every symbolic link in `dir/by-id` and `dir/by-path`.
pub fn stable_links(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut links = Vec::new();
    for sub in ["by-id", "by-path"] {
        for entry in std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let link = entry.path();
            if let Ok(target) = std::fs::canonicalize(&link) {
                links.push((link, target));
            }
        }
    }
    links.sort();
    links
}

/// The links among `links` that lead to `node`.
pub fn links_to(links: &[(PathBuf, PathBuf)], node: &Path) -> Vec<PathBuf> {
    let Ok(node) = std::fs::canonicalize(node) else {
        return Vec::new();
    };
    links
        .iter()
        .filter(|(_, target)| *target == node)
        .map(|(link, _)| link.clone())
        .collect()
}

/// Whether two device paths name the same node (`/dev/v4l/by-id/...` and `/dev/video0`).
pub fn same_node(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The USB device a node belongs to: `/sys/class/video4linux/videoN/device` is the USB
/// interface; its parent holds `idVendor`, `idProduct`, `serial`, `product`.
pub fn usb_identity(node: &Path) -> Option<UsbIdentity> {
    let name = std::fs::canonicalize(node).ok()?;
    let name = name.file_name()?;
    let interface = std::fs::canonicalize(
        Path::new("/sys/class/video4linux")
            .join(name)
            .join("device"),
    )
    .ok()?;
    let usb = interface.parent()?;
    let read = |file: &str| {
        std::fs::read_to_string(usb.join(file))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    Some(UsbIdentity {
        vendor: read("idVendor")?,
        product: read("idProduct")?,
        serial: read("serial"),
        name: read("product"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_nodes_are_sorted_by_number_and_other_names_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["video10", "video2", "video0", "videox", "vbi0", "media0"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let names: Vec<String> = video_nodes(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["video0", "video2", "video10"]);
    }

    #[test]
    fn stable_links_are_matched_to_their_node() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path();
        std::fs::write(dev.join("video0"), "").unwrap();
        std::fs::write(dev.join("video2"), "").unwrap();
        std::fs::create_dir_all(dev.join("v4l/by-id")).unwrap();
        std::fs::create_dir_all(dev.join("v4l/by-path")).unwrap();
        let ir = dev.join("v4l/by-id/usb-Acme_IR_Camera-video-index0");
        std::os::unix::fs::symlink("../../video2", &ir).unwrap();
        let path = dev.join("v4l/by-path/pci-0000:00:14.0-usb-0:5:1.2-video-index0");
        std::os::unix::fs::symlink(dev.join("video2"), &path).unwrap();
        let links = stable_links(&dev.join("v4l"));
        assert_eq!(
            links_to(&links, &dev.join("video2")),
            vec![ir.clone(), path]
        );
        assert!(links_to(&links, &dev.join("video0")).is_empty());
        assert!(same_node(&ir, &dev.join("video2")));
        assert!(!same_node(&ir, &dev.join("video0")));
    }

    #[test]
    fn listing_a_machine_without_cameras_is_empty_not_an_error() {
        // This runs on machines with and without cameras: it must simply not panic, and every
        // node it reports must be a videoN.
        for entry in list() {
            assert!(entry
                .node
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("video")));
        }
    }
}
