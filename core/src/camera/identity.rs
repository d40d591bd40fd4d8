//! Which camera a face was seen by: the rules that tie an enrolment to the camera it was made with, and that keep
//! virtual capture devices out.
//!
//! `require_ir` trusts what a device says about its formats, and a device's name is whatever it says it is: a
//! v4l2loopback or akvcam node fed from a file, or a USB gadget that copies a camera's descriptors, can claim to be
//! an infrared camera. Two rules narrow that:
//!
//! - A virtual capture driver ([`VIRTUAL_DRIVERS`]) is refused at open unless the configuration says
//!   `[camera] allow_virtual = true` (tests with vivid). Any program that can write to a loopback device chooses
//!   the frames it gives.
//! - Each enrolled sample records the identity of the camera it came from ([`CameraIdentity`]: driver, card, bus
//!   position, USB vendor and product). At authentication only samples enrolled with the camera in use are
//!   compared; when none was, the decision is unavailable and says which camera the user enrolled with. A device
//!   that copies the ids must also sit at the same bus position (the built-in camera's internal port) to pass.
//!
//! Samples enrolled from image files, or before identities were recorded, carry no identity and are compared
//! whatever the camera (`facekey list` shows them; re-enrolling records it).

use std::path::Path;

pub use crate::frame::live::CameraIdentity;
use crate::frame::live::CameraInfo;
use crate::frame::SourceError;
use crate::store::Enrolment;

/// Kernel drivers whose capture nodes show frames some program supplies, not a sensor: the kernel's test drivers
/// (vivid, vimc, vicodec, vim2m, visl) and the loopback drivers (v4l2loopback reports "v4l2 loopback"; akvcam).
pub const VIRTUAL_DRIVERS: [&str; 8] = [
    "vivid",
    "vimc",
    "vicodec",
    "vim2m",
    "visl",
    "v4l2 loopback",
    "v4l2loopback",
    "akvcam",
];

/// The longest field kept (V4L2 gives at most 32 bytes for driver and bus and 32 for card; sysfs ids are 4 hex
/// digits each).
const MAX_FIELD: usize = 64;

impl CameraIdentity {
    /// The identity of the capture node `node` whose VIDIOC_QUERYCAP answered `driver`, `card` and `bus`: the USB
    /// ids are read from sysfs (before any confinement: the decision's camera is opened privileged).
    pub fn of_node(node: &Path, driver: &str, card: &str, bus: &str) -> CameraIdentity {
        CameraIdentity {
            driver: clean(driver),
            card: clean(card),
            bus: clean(bus),
            usb: usb_ids(node),
        }
    }

    /// "Integrated IR Camera (uvcvideo, usb-0000:00:14.0-5, USB 04f2:b6d9)".
    pub fn describe(&self) -> String {
        let usb = self
            .usb
            .as_ref()
            .map(|u| format!(", USB {u}"))
            .unwrap_or_default();
        format!("{:?} ({}, {}{usb})", self.card, self.driver, self.bus)
    }

    /// Why a stored identity is not one [`CameraIdentity::of_node`] could have made (the enrolment store checks
    /// every sample's on load and before save).
    pub fn problem(&self) -> Option<String> {
        for (name, value) in [
            ("driver", &self.driver),
            ("card", &self.card),
            ("bus", &self.bus),
        ] {
            if value.len() > MAX_FIELD || value.chars().any(char::is_control) {
                return Some(format!(
                    "camera {name} is longer than {MAX_FIELD} bytes or holds a control character"
                ));
            }
        }
        match &self.usb {
            Some(usb) if !is_usb_id(usb) => {
                Some(format!("camera usb id {usb:?} is not vvvv:pppp in hex"))
            }
            _ => None,
        }
    }
}

/// The virtual driver `driver` is, when it is one of [`VIRTUAL_DRIVERS`].
pub fn virtual_driver(driver: &str) -> Option<&'static str> {
    let driver = driver.trim();
    VIRTUAL_DRIVERS
        .into_iter()
        .find(|v| v.eq_ignore_ascii_case(driver))
}

/// The part of `enrolment` a face seen by `camera` may be compared with: the samples enrolled with this camera and
/// those with no recorded camera. None left (every sample is another camera's): [`SourceError::OtherCamera`].
pub fn samples_for(
    mut enrolment: Enrolment,
    camera: &CameraInfo,
) -> Result<Enrolment, SourceError> {
    let current = &camera.identity;
    let mut others: Vec<String> = Vec::new();
    enrolment.samples.retain(|sample| match &sample.camera {
        Some(recorded) if recorded != current => {
            let text = recorded.describe();
            if !others.contains(&text) {
                others.push(text);
            }
            false
        }
        _ => true,
    });
    if enrolment.samples.is_empty() && !others.is_empty() {
        return Err(SourceError::OtherCamera {
            device: camera.device.display().to_string(),
            current: current.describe(),
            enrolled: others.join("; "),
        });
    }
    Ok(enrolment)
}

/// The text kept of a QUERYCAP field: trimmed, control characters dropped, at most [`MAX_FIELD`] bytes.
fn clean(text: &str) -> String {
    let mut out = String::new();
    for c in text.trim().chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_FIELD {
            break;
        }
        out.push(c);
    }
    out
}

fn is_usb_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 9
        && bytes[4] == b':'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| i == 4 || b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

/// `idVendor:idProduct` of the USB device behind a capture node, when there is one.
fn usb_ids(node: &Path) -> Option<String> {
    let paths = super::descriptors::usb_paths(node)?;
    let device = paths.interface.parent()?;
    let read = |name: &str| {
        let text = std::fs::read_to_string(device.join(name)).ok()?;
        let text = text.trim().to_ascii_lowercase();
        (text.len() == 4 && text.bytes().all(|b| b.is_ascii_hexdigit())).then_some(text)
    };
    Some(format!("{}:{}", read("idVendor")?, read("idProduct")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera_info(identity: CameraIdentity) -> CameraInfo {
        use crate::frame::PixelFormat;
        let format = PixelFormat::Grey;
        CameraInfo {
            device: "/dev/video0".into(),
            driver: identity.driver.clone(),
            card: identity.card.clone(),
            bus: identity.bus.clone(),
            identity,
            infrared: true,
            offers: vec![],
            asked: super::super::Choice {
                format,
                width: 640,
                height: 480,
                fps: None,
            },
            format,
            width: 640,
            height: 480,
            stride: 640,
            image_size: 640 * 480,
            fps: None,
            streaming: true,
            notes: vec![],
            emitter: None,
            counters: Default::default(),
        }
    }

    fn id(bus: &str, usb: Option<&str>) -> CameraIdentity {
        CameraIdentity {
            driver: "uvcvideo".into(),
            card: "Integrated IR Camera".into(),
            bus: bus.into(),
            usb: usb.map(str::to_owned),
        }
    }

    #[test]
    fn loopback_and_test_drivers_are_virtual_and_uvcvideo_is_not() {
        for driver in ["vivid", "v4l2 loopback", "akvcam", "VIMC", " vivid "] {
            assert!(virtual_driver(driver).is_some(), "{driver}");
        }
        for driver in ["uvcvideo", "gspca_main", "ipu6", "", "vivid2"] {
            assert_eq!(virtual_driver(driver), None, "{driver}");
        }
    }

    #[test]
    fn only_samples_of_this_camera_or_of_no_recorded_camera_are_compared() {
        use crate::store::{EmbedderId, UserName};
        let internal = id("usb-0000:00:14.0-5", Some("04f2:b6d9"));
        let gadget_elsewhere = id("usb-0000:00:14.0-2", Some("04f2:b6d9"));
        let other_ids = id("usb-0000:00:14.0-5", Some("1d6b:0102"));
        let user = UserName::new("alice").unwrap();
        let embedder = EmbedderId {
            sha256: "a".repeat(64),
            dimension: 2,
        };
        let mut enrolment = Enrolment::new(&user, embedder);
        enrolment.add_sample_from("internal", vec![1.0, 0.0], Some(internal.clone()));
        enrolment.add_sample_from("file", vec![0.0, 1.0], None);
        enrolment.add_sample_from("gadget", vec![0.6, 0.8], Some(gadget_elsewhere.clone()));
        let on = |identity: &CameraIdentity| camera_info(identity.clone());
        let ids = |e: Enrolment| e.samples.iter().map(|s| s.id).collect::<Vec<_>>();
        assert_eq!(
            ids(samples_for(enrolment.clone(), &on(&internal)).unwrap()),
            [1, 2]
        );
        assert_eq!(
            ids(samples_for(enrolment.clone(), &on(&gadget_elsewhere)).unwrap()),
            [2, 3]
        );
        assert_eq!(
            ids(samples_for(enrolment.clone(), &on(&other_ids)).unwrap()),
            [2]
        );

        enrolment.remove_sample(2);
        let Err(SourceError::OtherCamera {
            current, enrolled, ..
        }) = samples_for(enrolment.clone(), &on(&other_ids))
        else {
            panic!("a camera no sample was enrolled with must be refused");
        };
        assert!(current.contains("1d6b:0102"), "{current}");
        assert!(
            enrolled.contains("usb-0000:00:14.0-5") && enrolled.contains("usb-0000:00:14.0-2"),
            "{enrolled}"
        );
        // An empty enrolment is not this rule's business (the store refuses it elsewhere).
        let mut empty = enrolment;
        empty.samples.clear();
        assert!(samples_for(empty, &on(&other_ids)).is_ok());
    }

    #[test]
    fn identities_are_cleaned_and_checked() {
        let made = CameraIdentity::of_node(
            Path::new("/nonexistent/video9"),
            " uvcvideo\n",
            &"x".repeat(200),
            "usb-1\u{7}",
        );
        assert_eq!(made.driver, "uvcvideo");
        assert_eq!(made.card.len(), MAX_FIELD);
        assert_eq!(made.bus, "usb-1");
        assert_eq!(made.usb, None);
        assert_eq!(made.problem(), None);
        assert!(id("usb-1", Some("04F2:b6d9")).problem().is_some());
        assert!(id("usb-1", Some("04f2b6d9")).problem().is_some());
        assert!(id("usb\n1", None).problem().is_some());
        assert_eq!(id("usb-1", Some("04f2:b6d9")).problem(), None);
    }
}
