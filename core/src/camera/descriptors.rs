//! The extension units a UVC camera declares, read from its USB configuration descriptors.
//!
//! Linux exposes the raw descriptors of a USB device in sysfs (`descriptors`: the device
//! descriptor, then every configuration). A UVC function's VideoControl interface (class 0x0E,
//! subclass 0x01) carries class-specific descriptors (type CS_INTERFACE, 0x24); those of subtype
//! VC_EXTENSION_UNIT (0x06) name an extension unit: its id, its GUID and a bitmap of the controls
//! (selectors) it has. Discovery queries only those, rather than every unit and selector blind.
//! The same subtype 0x06 inside a VideoStreaming interface is VS_FORMAT_MJPEG: the interface a
//! descriptor belongs to decides what it is.
//!
//! [`extension_units`] is a pure function over bytes. What it must never do: panic, loop, or read
//! past a descriptor's own length on any input (truncated files, zero or lying lengths); a
//! descriptor that does not hold together is skipped, the walk stops where lengths stop making
//! sense. Hand-written rather than through a USB crate: the sysfs file needs no device access,
//! and the handful of fields read here do not justify a libusb binding in a PAM module.

use std::fmt;
use std::path::{Path, PathBuf};

use super::xu::ControlId;

const DT_INTERFACE: u8 = 0x04;
const CS_INTERFACE: u8 = 0x24;
const VC_EXTENSION_UNIT: u8 = 0x06;
const CLASS_VIDEO: u8 = 0x0E;
const SUBCLASS_VIDEOCONTROL: u8 = 0x01;

/// Microsoft's camera control extension unit (MS_CAMERA_CONTROL_XU), which Windows Hello cameras
/// carry; its selector 6 is FACE_AUTHENTICATION (Microsoft's "USB Video Class (UVC) camera
/// implementation guide", extension unit controls).
pub const MS_CAMERA_CONTROL_XU: Guid = Guid([
    0xdc, 0x95, 0x3f, 0x0f, 0x32, 0x26, 0x4e, 0x4c, 0x92, 0xc9, 0xa0, 0x47, 0x82, 0xf4, 0x3b, 0xc8,
]);

/// MS_CAMERA_CONTROL_XU's FACE_AUTHENTICATION selector.
pub const MS_FACE_AUTHENTICATION: u8 = 0x06;

/// A GUID as USB stores it (the first three fields little-endian).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        for byte in &b[10..] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{self}}}")
    }
}

/// One VC_EXTENSION_UNIT descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionUnit {
    /// The VideoControl interface it belongs to (bInterfaceNumber).
    pub interface: u8,
    pub unit: u8,
    pub guid: Guid,
    /// bNumControls as declared (the bitmap is what counts).
    pub declared_controls: u8,
    /// The selectors present in bmControls (bit N is selector N + 1), ascending.
    pub selectors: Vec<u8>,
}

impl ExtensionUnit {
    pub fn controls(&self) -> impl Iterator<Item = ControlId> + '_ {
        self.selectors.iter().map(|&selector| ControlId {
            unit: self.unit,
            selector,
        })
    }
}

/// Every extension unit in the VideoControl interfaces of a device's raw descriptors, in the
/// order they appear. Never panics; malformed descriptors are skipped (see the module docs).
pub fn extension_units(bytes: &[u8]) -> Vec<ExtensionUnit> {
    let mut units = Vec::new();
    // The interface the descriptors being walked belong to, when it is a VideoControl one.
    let mut video_control: Option<u8> = None;
    let mut rest = bytes;
    while rest.len() >= 2 {
        let length = usize::from(rest[0]);
        if length < 2 || length > rest.len() {
            break;
        }
        let (descriptor, next) = rest.split_at(length);
        rest = next;
        match descriptor[1] {
            DT_INTERFACE => {
                video_control = match descriptor {
                    [_, _, number, _, _, CLASS_VIDEO, SUBCLASS_VIDEOCONTROL, ..] => Some(*number),
                    _ => None,
                };
            }
            CS_INTERFACE => {
                if let Some(interface) = video_control {
                    if let Some(unit) = extension_unit(interface, descriptor) {
                        units.push(unit);
                    }
                }
            }
            _ => {}
        }
    }
    units
}

/// One VC_EXTENSION_UNIT descriptor: bLength, bDescriptorType, bDescriptorSubtype, bUnitID,
/// guidExtensionCode[16], bNumControls, bNrInPins (p), baSourceID[p], bControlSize (n),
/// bmControls[n], iExtension. `None` when it is another subtype or does not fit its length.
fn extension_unit(interface: u8, d: &[u8]) -> Option<ExtensionUnit> {
    if d.get(2) != Some(&VC_EXTENSION_UNIT) {
        return None;
    }
    let unit = *d.get(3)?;
    let guid: [u8; 16] = d.get(4..20)?.try_into().ok()?;
    let declared_controls = *d.get(20)?;
    let pins = usize::from(*d.get(21)?);
    let size_at = 22 + pins;
    let control_size = usize::from(*d.get(size_at)?);
    let bitmap = d.get(size_at + 1..size_at + 1 + control_size)?;
    // iExtension must fit too: a descriptor shorter than its fields is not trusted.
    d.get(size_at + 1 + control_size)?;
    let selectors = bitmap
        .iter()
        .enumerate()
        .flat_map(|(i, byte)| {
            (0..8)
                .filter(move |bit| byte & (1 << bit) != 0)
                .map(move |bit| i * 8 + bit + 1)
        })
        .filter_map(|selector| u8::try_from(selector).ok())
        .collect();
    // Unit id 0 is reserved (UVC 1.5, 3.7.2): no control can be addressed through it.
    (unit != 0).then_some(ExtensionUnit {
        interface,
        unit,
        guid: Guid(guid),
        declared_controls,
        selectors,
    })
}

/// The order discovery tries controls in: Microsoft's FACE_AUTHENTICATION first (the documented
/// control behind Windows Hello's emitter), then every other control in descriptor order.
pub fn discovery_order(units: &[ExtensionUnit]) -> Vec<ControlId> {
    let is_face_auth = |u: &ExtensionUnit, c: &ControlId| {
        u.guid == MS_CAMERA_CONTROL_XU && c.selector == MS_FACE_AUTHENTICATION
    };
    let mut first = Vec::new();
    let mut rest = Vec::new();
    for unit in units {
        for control in unit.controls() {
            if is_face_auth(unit, &control) {
                first.push(control);
            } else {
                rest.push(control);
            }
        }
    }
    first.extend(rest);
    // Each control once, even when a hostile or broken descriptor set lists a unit twice (found by the
    // descriptors fuzz target: `dedup` alone kept non-adjacent repeats).
    let mut seen = std::collections::HashSet::new();
    first.retain(|control| seen.insert(*control));
    first
}

/// Where a capture node's USB descriptors and interface number are in sysfs:
/// `/sys/class/video4linux/videoN/device` is the VideoControl interface the driver bound to; its
/// parent, the USB device, holds `descriptors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbPaths {
    pub interface: PathBuf,
    pub descriptors: PathBuf,
}

/// The sysfs paths behind `node` (`/dev/videoN` or a link to it), when it is a USB camera.
pub fn usb_paths(node: &Path) -> Option<UsbPaths> {
    let name = std::fs::canonicalize(node).ok()?;
    let name = name.file_name()?;
    let interface = std::fs::canonicalize(
        Path::new("/sys/class/video4linux")
            .join(name)
            .join("device"),
    )
    .ok()?;
    let descriptors = interface.parent()?.join("descriptors");
    Some(UsbPaths {
        interface,
        descriptors,
    })
}

/// The most bytes read of a `descriptors` file (a configuration is at most 64 KiB).
const MAX_DESCRIPTOR_BYTES: u64 = 256 * 1024;

/// The extension units of the VideoControl interface behind `node`, read from sysfs.
pub fn extension_units_of(node: &Path) -> Result<(Vec<ExtensionUnit>, Vec<u8>), String> {
    use std::io::Read;
    let paths = usb_paths(node).ok_or_else(|| {
        format!(
            "{}: not a USB camera (no USB device behind it in /sys/class/video4linux)",
            node.display()
        )
    })?;
    let mut bytes = Vec::new();
    std::fs::File::open(&paths.descriptors)
        .and_then(|f| f.take(MAX_DESCRIPTOR_BYTES).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", paths.descriptors.display()))?;
    let interface = std::fs::read_to_string(paths.interface.join("bInterfaceNumber"))
        .ok()
        .and_then(|s| u8::from_str_radix(s.trim(), 16).ok());
    let units = extension_units(&bytes)
        .into_iter()
        .filter(|u| interface.is_none_or(|i| i == u.interface))
        .collect();
    Ok((units, bytes))
}

// `hex` and `parse_hex` are hand-written: the `hex` crate would add a dependency to the PAM module
// for two loops, and it does not take the separators people paste (`01 03 03`, `01:03:03`).

/// Bytes as hex, two digits each, no separator (the store and `--report`).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex digits (spaces, commas, colons and a 0x prefix allowed between bytes) to bytes.
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    let digits: String = text
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| !matches!(c, ' ' | ',' | ':' | '_'))
        .collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dump of tests/data/uvc, whitespace-separated hex with `#` comments.
    fn dump(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/data/uvc")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        text.lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.split_whitespace())
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn thinkpad_e15_ir_camera_has_three_units_and_a_vs_mjpeg_format_is_not_one() {
        let bytes = dump("thinkpad-e15-gen2-ir.hex");
        let units = extension_units(&bytes);
        let summary: Vec<(u8, u8, String, Vec<u8>)> = units
            .iter()
            .map(|u| (u.interface, u.unit, u.guid.to_string(), u.selectors.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (2, 12, "45b5da73-23c1-4a3d-a368-610f078c4397".into(), vec![]),
                (
                    2,
                    10,
                    "1229a78c-47b4-4094-b0ce-db07386fb938".into(),
                    vec![10, 11]
                ),
                (
                    2,
                    13,
                    "26b8105a-0713-4870-979d-da79444bb68e".into(),
                    vec![14, 15, 16]
                ),
            ]
        );
        assert_eq!(units[2].declared_controls, 3);
        // The dump ends with a VideoStreaming interface whose first format is MJPG (subtype
        // 0x06 too): it must not be read as a unit.
        assert!(bytes.windows(3).any(|w| w == [0x0b, 0x24, 0x06]));
    }

    #[test]
    fn thinkpad_p16s_microsoft_unit_puts_face_authentication_first() {
        let units = extension_units(&dump("thinkpad-p16s-gen2-ir.hex"));
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].unit, 7);
        assert_eq!(units[0].guid, MS_CAMERA_CONTROL_XU);
        assert_eq!(
            units[0].guid.to_string(),
            "0f3f95dc-2632-4c4e-92c9-a04782f43bc8"
        );
        assert_eq!(units[0].selectors, vec![2, 3, 6, 7, 8, 9]);
        let order = discovery_order(&units);
        assert_eq!(
            order[0],
            ControlId {
                unit: 7,
                selector: 6
            }
        );
        assert_eq!(order.len(), 6);
    }

    #[test]
    fn a_unit_listed_twice_yields_each_control_once() {
        // Found by the descriptors fuzz target (fuzz/regressions/descriptors): the same unit, not adjacent.
        let unit = |id: u8, selectors: Vec<u8>| ExtensionUnit {
            interface: 0,
            unit: id,
            guid: Guid([id; 16]),
            declared_controls: 0,
            selectors,
        };
        let units = [unit(4, vec![1, 2]), unit(5, vec![1]), unit(4, vec![1, 2])];
        let order = discovery_order(&units);
        let pairs: Vec<(u8, u8)> = order.iter().map(|c| (c.unit, c.selector)).collect();
        assert_eq!(pairs, [(4, 1), (4, 2), (5, 1)]);
    }

    #[test]
    fn units_outside_a_videocontrol_interface_are_ignored() {
        // The same extension unit bytes after an audio interface descriptor.
        let mut bytes = vec![9, DT_INTERFACE, 3, 0, 0, 0x01, 0x01, 0, 0];
        bytes.extend(xu(5, &[0x01]));
        assert!(extension_units(&bytes).is_empty());
        let mut bytes = vec![
            9,
            DT_INTERFACE,
            0,
            0,
            1,
            CLASS_VIDEO,
            SUBCLASS_VIDEOCONTROL,
            0,
            0,
        ];
        bytes.extend(xu(5, &[0x01]));
        assert_eq!(extension_units(&bytes)[0].selectors, vec![1]);
    }

    fn xu(unit: u8, bitmap: &[u8]) -> Vec<u8> {
        let mut d = vec![0, CS_INTERFACE, VC_EXTENSION_UNIT, unit];
        d.extend([0x11; 16]);
        d.extend([bitmap.len() as u8, 1, 2, bitmap.len() as u8]);
        d.extend(bitmap);
        d.push(0);
        d[0] = d.len() as u8;
        d
    }

    #[test]
    fn hostile_bytes_never_panic_and_yield_only_whole_units() {
        let vc = [
            9,
            DT_INTERFACE,
            0,
            0,
            1,
            CLASS_VIDEO,
            SUBCLASS_VIDEOCONTROL,
            0,
            0,
        ];
        let good = xu(4, &[0x23]);
        let mut whole = vc.to_vec();
        whole.extend(&good);
        assert_eq!(extension_units(&whole)[0].selectors, vec![1, 2, 6]);
        // Every truncation: no panic, and a unit only when all of it is there.
        for cut in 0..whole.len() {
            let units = extension_units(&whole[..cut]);
            assert!(units.is_empty(), "cut at {cut}: {units:?}");
        }
        // A zero length stops the walk instead of looping.
        assert!(extension_units(&[0, 0x24, 6, 4]).is_empty());
        // A length larger than the rest of the file.
        let mut lying = whole.clone();
        lying[vc.len()] = 200;
        assert!(extension_units(&lying).is_empty());
        // bLength shorter than the bitmap it announces: skipped, the walk goes on.
        let mut short = vc.to_vec();
        let mut bad = xu(4, &[0xff, 0xff]);
        bad[23] = 9; // bControlSize says nine bytes of bitmap
        short.extend(&bad);
        short.extend(xu(5, &[0x01]));
        let units = extension_units(&short);
        assert_eq!(units.len(), 1);
        assert_eq!(units[0].unit, 5);
        // bNrInPins past the end of the descriptor.
        let mut pins = vc.to_vec();
        let mut bad = xu(4, &[0x01]);
        bad[21] = 250;
        pins.extend(&bad);
        assert!(extension_units(&pins).is_empty());
        // Unit id 0 is reserved.
        let mut zero = vc.to_vec();
        zero.extend(xu(0, &[0x01]));
        assert!(extension_units(&zero).is_empty());
        // A 32-byte bitmap: selectors stop at 255 without overflow.
        let mut wide = vc.to_vec();
        wide.extend(xu(4, &[0xff; 32]));
        let units = extension_units(&wide);
        assert_eq!(units[0].selectors.len(), 255);
        assert_eq!(units[0].selectors.last(), Some(&255));
    }

    #[test]
    fn pseudo_random_bytes_never_panic() {
        // A fixed xorshift stream: reproducible, no extra dependency.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..2000 {
            let len = round % 300;
            let bytes: Vec<u8> = (0..len)
                .map(|i| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Bias toward the bytes that matter so walks get somewhere.
                    match i % 7 {
                        1 => [DT_INTERFACE, CS_INTERFACE][(state & 1) as usize],
                        _ => (state >> 24) as u8 % 40,
                    }
                })
                .collect();
            for unit in extension_units(&bytes) {
                assert!(unit.unit != 0);
            }
        }
    }

    #[test]
    fn hex_round_trips_and_rejects_odd_or_foreign_digits() {
        assert_eq!(hex(&[1, 3, 3, 0]), "01030300");
        assert_eq!(parse_hex("01 03 03 00"), Some(vec![1, 3, 3, 0]));
        assert_eq!(parse_hex("0x010303"), Some(vec![1, 3, 3]));
        assert_eq!(parse_hex("01:03"), Some(vec![1, 3]));
        assert_eq!(parse_hex("013"), None);
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(parse_hex(""), None);
        assert_eq!(parse_hex("é1"), None);
    }

    #[test]
    fn a_node_that_is_not_a_usb_camera_is_reported_as_such() {
        let err = extension_units_of(Path::new("/dev/null")).unwrap_err();
        assert!(err.contains("not a USB camera"), "{err}");
    }
}
