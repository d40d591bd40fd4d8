//! Finding the extension-unit control that lights a camera's infrared emitter, from the frames.
//!
//! For each control the camera declares (in [`super::super::descriptors::discovery_order`]) that
//! can be both read and written, try a few candidate values; after each, capture a burst of
//! frames and judge them against the burst captured before anything was touched ([`judge`]).
//! The first value that gives lit frames is kept, and discovery stops. Every control that was
//! touched and did not help is set back to the value it had, and read back to check; one that
//! does not read back as it was is reported, with what to do.
//!
//! Candidates ([`candidates`]): GET_MAX (what most emitter controls want: the "[1,3,3,0,...]" of
//! many Chicony/Sunplus modules is their GET_MAX), then the widespread `[1,3,3,0,...]` and
//! `[1,0,...]` patterns, then the current value with one byte at a time raised to its GET_MAX
//! byte, then GET_DEF with its first byte stepped by GET_RES. Values outside GET_MIN..GET_MAX
//! (bytewise, where both are known) are not sent; the current value is not a candidate. At most
//! [`MAX_CANDIDATES`] per control.
//!
//! What it must never do: write a control it could not read first (it could not be put back),
//! write a value longer or shorter than GET_LEN, go past its time cap by more than one burst, or
//! write anything in a dry run. The device is behind [`EmitterDevice`], so all of this is tested
//! on a simulated camera.

use std::time::Duration;

use crate::camera::xu::{ControlId, Request, XuError, INFO_GET, INFO_SET};
use crate::liveness::Exposure;

/// The most candidate values tried per control.
pub const MAX_CANDIDATES: usize = 8;

/// The longest control discovery writes; longer ones are reported and left alone.
pub const MAX_TRIED_LEN: u16 = 64;

/// A dark frame, for judging: more than this share of its pixels in the darkest eighth (the
/// decision's default `camera.dark_threshold`, 60%).
const DARK_FRACTION: f32 = 0.60;

/// What discovery needs of a camera: extension-unit queries and bursts of frame brightness.
pub trait EmitterDevice {
    /// One UVCIOC_CTRL_QUERY: `data` is the value sent (SET_CUR) or the answer (GET_*).
    fn query(
        &mut self,
        control: ControlId,
        request: Request,
        data: &mut [u8],
    ) -> Result<(), XuError>;
    /// The brightness of the next `frames` frames (fewer when the camera stops delivering).
    fn burst(&mut self, frames: usize) -> Result<Vec<Exposure>, String>;
    /// Time since discovery started (the real device reads a clock; a simulated one counts).
    fn elapsed(&self) -> Duration;
}

/// How discovery runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Stop starting new tries after this long.
    pub time_cap: Duration,
    /// Frames per burst.
    pub burst: usize,
    /// Read everything, write nothing.
    pub dry_run: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            time_cap: Duration::from_secs(120),
            burst: 12,
            dry_run: false,
        }
    }
}

/// What a burst of frames looked like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstStats {
    pub frames: usize,
    /// Mean brightness over the burst, 0-255.
    pub mean: f32,
    /// Share of dark frames, 0-1.
    pub dark_share: f32,
    /// Dark and lit frames alternate (an emitter flashing on every other frame).
    pub flashing: bool,
}

impl BurstStats {
    pub fn of(exposures: &[Exposure]) -> BurstStats {
        let n = exposures.len();
        if n == 0 {
            return BurstStats {
                frames: 0,
                mean: 0.0,
                dark_share: 1.0,
                flashing: false,
            };
        }
        let dark: Vec<bool> = exposures
            .iter()
            .map(|e| e.dark_fraction > DARK_FRACTION)
            .collect();
        let dark_count = dark.iter().filter(|d| **d).count();
        let changes = dark.windows(2).filter(|w| w[0] != w[1]).count();
        BurstStats {
            frames: n,
            mean: exposures.iter().map(|e| e.mean).sum::<f32>() / n as f32,
            dark_share: dark_count as f32 / n as f32,
            // Mostly alternating: at least two thirds of the possible changes, both kinds present.
            flashing: n >= 4 && dark_count > 0 && dark_count < n && changes * 3 >= (n - 1) * 2,
        }
    }
}

/// Whether a burst shows a lit emitter, compared with the burst before anything was touched.
///
/// Lit, either way:
/// - at least a third of the frames are not dark, and that share grew by a third of the burst or
///   dark and lit frames alternate where they did not before (the flashing of an emitter
///   synchronised with the exposure);
/// - the burst is more than twice as bright as before, plus 16 grey levels (a lit face on a black
///   background can leave most pixels dark). The factor keeps an automatic exposure settling on a
///   scene lit by daylight from passing for an emitter, and one bright frame in ten from passing.
pub fn judge(before: &BurstStats, after: &BurstStats) -> bool {
    if after.frames == 0 {
        return false;
    }
    let lit_share = 1.0 - after.dark_share;
    let lit_before = 1.0 - before.dark_share;
    let more_lit_frames = lit_share >= 1.0 / 3.0
        && (lit_share - lit_before >= 1.0 / 3.0 || (after.flashing && !before.flashing));
    let brighter = after.mean >= 2.0 * before.mean + 16.0;
    more_lit_frames || brighter
}

/// A dark-frame threshold (percent, for `camera.dark_threshold`) learnt from the camera's own
/// unlit and lit frames. The lit frames are those of the lit burst brighter than every unlit
/// frame by 8 grey levels; the threshold is halfway between the largest dark share among them and
/// the smallest among the unlit frames, when the two are at least 10 points apart; `None`
/// otherwise (then the default applies).
pub fn learn_dark_threshold(unlit: &[Exposure], lit: &[Exposure]) -> Option<f32> {
    let unlit_brightest = unlit.iter().map(|e| e.mean).reduce(f32::max)?;
    let highest_lit = lit
        .iter()
        .filter(|e| e.mean > unlit_brightest + 8.0)
        .map(|e| e.dark_fraction)
        .reduce(f32::max)?;
    let lowest_unlit = unlit.iter().map(|e| e.dark_fraction).reduce(f32::min)?;
    let (lo, hi) = (highest_lit * 100.0, lowest_unlit * 100.0);
    (hi - lo >= 10.0).then(|| ((lo + hi) / 2.0).clamp(1.0, 99.0))
}

/// The values tried for a control (see the module documentation), in order.
pub fn candidates(
    len: usize,
    cur: &[u8],
    min: Option<&[u8]>,
    max: Option<&[u8]>,
    res: Option<&[u8]>,
    def: Option<&[u8]>,
) -> Vec<Vec<u8>> {
    let fits = |v: &[u8]| v.len() == len;
    let within = |v: &[u8]| {
        let (Some(min), Some(max)) = (min.filter(|m| fits(m)), max.filter(|m| fits(m))) else {
            return true;
        };
        // Only where the camera's own bounds make sense bytewise (min <= max everywhere).
        if min.iter().zip(max).any(|(lo, hi)| lo > hi) {
            return true;
        }
        v.iter()
            .zip(min.iter().zip(max))
            .all(|(b, (lo, hi))| lo <= b && b <= hi)
    };
    let pattern = |head: &[u8]| {
        let mut v = vec![0u8; len];
        for (slot, b) in v.iter_mut().zip(head) {
            *slot = *b;
        }
        v
    };
    let mut out: Vec<Vec<u8>> = Vec::new();
    if let Some(max) = max.filter(|m| fits(m)) {
        out.push(max.to_vec());
    }
    if len >= 3 {
        out.push(pattern(&[1, 3, 3]));
    }
    out.push(pattern(&[1]));
    if let Some(max) = max.filter(|m| fits(m)) {
        for i in 0..len {
            if cur.get(i) != max.get(i) {
                let mut v = cur.to_vec();
                v[i] = max[i];
                out.push(v);
            }
        }
    }
    if let Some(def) = def.filter(|d| fits(d)) {
        let step = res
            .filter(|r| fits(r))
            .and_then(|r| r.first().copied())
            .filter(|s| *s > 0)
            .unwrap_or(1);
        let mut v = def.to_vec();
        v[0] = v[0].saturating_add(step);
        out.push(v);
    }
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for v in out {
        if fits(&v) && v != cur && within(&v) && !seen.contains(&v) {
            seen.push(v);
        }
    }
    seen.truncate(MAX_CANDIDATES);
    seen
}

/// What became of one control.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlReport {
    pub control: ControlId,
    /// GET_INFO, when it answered.
    pub info: Option<u8>,
    pub len: Option<u16>,
    /// GET_CUR before anything was written.
    pub original: Option<Vec<u8>>,
    pub min: Option<Vec<u8>>,
    pub max: Option<Vec<u8>>,
    pub res: Option<Vec<u8>>,
    pub def: Option<Vec<u8>>,
    /// Each value tried and the burst it gave (`None`: the write was refused, with why).
    pub tries: Vec<Try>,
    pub fate: Fate,
    /// The time cap was reached while trying this control (it was put back all the same).
    pub capped: bool,
}

/// One value tried.
#[derive(Debug, Clone, PartialEq)]
pub struct Try {
    pub value: Vec<u8>,
    pub result: Result<BurstStats, String>,
    pub lit: bool,
}

/// How a control was left.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Not written: why (read-only, unreadable, too long, a dry run...).
    Skipped(String),
    /// Written, did not help, put back and read back as it was.
    Restored,
    /// Written and could not be put back: the camera keeps `left` (when it could be read).
    Unrestored {
        left: Option<Vec<u8>>,
        error: String,
    },
    /// Lights the emitter: left at the value found.
    Lights,
}

/// The result of a discovery.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery {
    /// The burst before anything was written.
    pub baseline: Option<BurstStats>,
    pub controls: Vec<ControlReport>,
    pub outcome: Outcome,
    /// A dark threshold learnt from the unlit and lit bursts ([`learn_dark_threshold`]).
    pub dark_threshold: Option<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Frames were lit before anything was touched: nothing to find.
    AlreadyLit,
    Found {
        control: ControlId,
        value: Vec<u8>,
        stats: BurstStats,
    },
    /// Every control was tried; none lit the emitter.
    NotFound,
    /// The time cap was reached first.
    TimedOut,
    /// No frames before anything was touched: nothing can be judged, nothing was written.
    NoFrames(String),
}

impl Discovery {
    /// Controls left changed (they could not be put back).
    pub fn unrestored(&self) -> impl Iterator<Item = &ControlReport> {
        self.controls
            .iter()
            .filter(|c| matches!(c.fate, Fate::Unrestored { .. }))
    }
}

/// Progress, for a terminal display.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    Baseline(&'a BurstStats),
    Control {
        control: ControlId,
        index: usize,
        of: usize,
    },
    Trying {
        control: ControlId,
        value: &'a [u8],
    },
    Tried {
        control: ControlId,
        value: &'a [u8],
        lit: bool,
    },
}

/// Run discovery over `controls` (in this order): see the module documentation. `first` are
/// settings to try before any search (the built-in table of known cameras): each is tried only
/// when the camera declares that control.
pub fn discover(
    device: &mut dyn EmitterDevice,
    controls: &[ControlId],
    first: &[(ControlId, Vec<u8>)],
    options: &Options,
    progress: &mut dyn FnMut(Event<'_>),
) -> Discovery {
    let mut found = Discovery {
        baseline: None,
        controls: Vec::new(),
        outcome: Outcome::NotFound,
        dark_threshold: None,
    };
    let unlit = match device.burst(options.burst) {
        Ok(e) if !e.is_empty() => e,
        Ok(_) => {
            found.outcome = Outcome::NoFrames("the camera delivered no frame".into());
            return found;
        }
        Err(e) => {
            found.outcome = Outcome::NoFrames(e);
            return found;
        }
    };
    let baseline = BurstStats::of(&unlit);
    found.baseline = Some(baseline);
    progress(Event::Baseline(&baseline));
    // The emitter's flashing is there already, or nearly every frame is lit (the emitter, or
    // ambient light strong enough to hide it): nothing can be judged, nothing is written.
    if baseline.flashing || baseline.dark_share < 1.0 / 3.0 {
        found.outcome = Outcome::AlreadyLit;
        return found;
    }
    let total = controls.len();
    for (index, &control) in controls.iter().enumerate() {
        if device.elapsed() >= options.time_cap {
            found.outcome = Outcome::TimedOut;
            return found;
        }
        progress(Event::Control {
            control,
            index,
            of: total,
        });
        let known: Vec<Vec<u8>> = first
            .iter()
            .filter(|(c, _)| *c == control)
            .map(|(_, v)| v.clone())
            .collect();
        let (report, lit) = try_control(device, control, &known, &baseline, options, progress);
        let timed_out = report.capped;
        found.controls.push(report);
        if let Some((value, stats, exposures)) = lit {
            found.dark_threshold = learn_dark_threshold(&unlit, &exposures);
            found.outcome = Outcome::Found {
                control,
                value,
                stats,
            };
            return found;
        }
        if timed_out {
            found.outcome = Outcome::TimedOut;
            return found;
        }
    }
    found
}

const TIME_CAP: &str = "the time cap was reached";

type Lit = (Vec<u8>, BurstStats, Vec<Exposure>);

fn try_control(
    device: &mut dyn EmitterDevice,
    control: ControlId,
    known: &[Vec<u8>],
    baseline: &BurstStats,
    options: &Options,
    progress: &mut dyn FnMut(Event<'_>),
) -> (ControlReport, Option<Lit>) {
    let mut report = ControlReport {
        control,
        info: None,
        len: None,
        original: None,
        min: None,
        max: None,
        res: None,
        def: None,
        tries: Vec::new(),
        fate: Fate::Skipped(String::new()),
        capped: false,
    };
    let skip = |mut report: ControlReport, why: String| {
        report.fate = Fate::Skipped(why);
        (report, None)
    };
    let mut byte = [0u8; 1];
    match device.query(control, Request::GetInfo, &mut byte) {
        Ok(()) => report.info = Some(byte[0]),
        Err(e) => return skip(report, format!("GET_INFO failed: {}", e.source)),
    }
    let info = byte[0];
    if info & INFO_SET == 0 {
        return skip(report, "read-only".into());
    }
    if info & INFO_GET == 0 {
        return skip(report, "cannot be read, so it could not be put back".into());
    }
    let mut two = [0u8; 2];
    let len = match device.query(control, Request::GetLen, &mut two) {
        Ok(()) => u16::from_le_bytes(two),
        Err(e) => return skip(report, format!("GET_LEN failed: {}", e.source)),
    };
    report.len = Some(len);
    if len == 0 || len > MAX_TRIED_LEN {
        return skip(report, format!("{len} bytes long: not tried"));
    }
    let mut get = |request: Request| {
        let mut v = vec![0u8; usize::from(len)];
        device.query(control, request, &mut v).ok().map(|()| v)
    };
    let Some(original) = get(Request::GetCur) else {
        return skip(report, "GET_CUR failed, so it could not be put back".into());
    };
    report.min = get(Request::GetMin);
    report.max = get(Request::GetMax);
    report.res = get(Request::GetRes);
    report.def = get(Request::GetDef);
    report.original = Some(original.clone());
    let mut values: Vec<Vec<u8>> = known
        .iter()
        .filter(|v| v.len() == usize::from(len) && **v != original)
        .cloned()
        .collect();
    for v in candidates(
        usize::from(len),
        &original,
        report.min.as_deref(),
        report.max.as_deref(),
        report.res.as_deref(),
        report.def.as_deref(),
    ) {
        if !values.contains(&v) {
            values.push(v);
        }
    }
    if options.dry_run {
        report.tries = values
            .into_iter()
            .map(|value| Try {
                value,
                result: Err("dry run: not written".into()),
                lit: false,
            })
            .collect();
        return skip(report, "dry run".into());
    }
    let mut written = false;
    let mut capped = false;
    for value in values {
        if device.elapsed() >= options.time_cap {
            capped = true;
            break;
        }
        progress(Event::Trying {
            control,
            value: &value,
        });
        let mut data = value.clone();
        if let Err(e) = device.query(control, Request::SetCur, &mut data) {
            // A refused write may still have changed something: put back below all the same.
            written = true;
            report.tries.push(Try {
                value,
                result: Err(format!("SET_CUR refused: {}", e.source)),
                lit: false,
            });
            continue;
        }
        written = true;
        let result = device.burst(options.burst);
        let (stats, lit, exposures) = match result {
            Ok(exposures) => {
                let stats = BurstStats::of(&exposures);
                (Ok(stats), judge(baseline, &stats), exposures)
            }
            Err(e) => (Err(e), false, Vec::new()),
        };
        progress(Event::Tried {
            control,
            value: &value,
            lit,
        });
        report.tries.push(Try {
            value: value.clone(),
            result: stats.clone(),
            lit,
        });
        if lit {
            report.fate = Fate::Lights;
            if let Ok(stats) = stats {
                return (report, Some((value, stats, exposures)));
            }
        }
    }
    report.fate = if written {
        restore(device, control, &original)
    } else if capped {
        Fate::Skipped(TIME_CAP.into())
    } else {
        Fate::Skipped("no candidate value".into())
    };
    report.capped = capped;
    (report, None)
}

/// Put a control back and read it back: restored when it reads back as it was, whatever the
/// write answered (a refused write may have changed nothing).
fn restore(device: &mut dyn EmitterDevice, control: ControlId, original: &[u8]) -> Fate {
    let mut data = original.to_vec();
    let set = device.query(control, Request::SetCur, &mut data);
    let mut now = vec![0u8; original.len()];
    let read = device.query(control, Request::GetCur, &mut now);
    match (set, read) {
        (_, Ok(())) if now == original => Fate::Restored,
        (Ok(()), Ok(())) => Fate::Unrestored {
            left: Some(now),
            error: "it reads back a different value after SET_CUR".into(),
        },
        (Err(e), read) => Fate::Unrestored {
            left: read.ok().map(|()| now),
            error: format!("SET_CUR refused: {}", e.source),
        },
        (Ok(()), Err(e)) => Fate::Unrestored {
            left: None,
            error: format!("cannot read it back: {}", e.source),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposure(mean: f32, dark_fraction: f32) -> Exposure {
        Exposure {
            mean,
            dark_fraction,
        }
    }
    use std::collections::BTreeMap;
    use std::io;

    /// One control of the simulated camera.
    #[derive(Clone)]
    struct SimControl {
        info: u8,
        cur: Vec<u8>,
        min: Vec<u8>,
        max: Vec<u8>,
        res: Vec<u8>,
        def: Vec<u8>,
        /// Every SET_CUR is refused.
        set_fails: bool,
        /// Only the first SET_CUR is taken; later ones (the restore) are refused.
        sticks_after_first_set: bool,
        sets: u32,
        /// The emitter lights exactly when the current value is this.
        lights_at: Option<Vec<u8>>,
    }

    impl SimControl {
        fn settable(len: usize) -> SimControl {
            SimControl {
                info: INFO_GET | INFO_SET,
                cur: vec![0; len],
                min: vec![0; len],
                max: vec![0xff; len],
                res: vec![1; len],
                def: vec![0; len],
                set_fails: false,
                sticks_after_first_set: false,
                sets: 0,
                lights_at: None,
            }
        }
    }

    /// A camera with extension units, a virtual clock and a frame counter. Lit frames alternate
    /// with dark ones (an emitter flashing on every other frame) and carry noise.
    struct SimCamera {
        controls: BTreeMap<ControlId, SimControl>,
        clock: Duration,
        burst_cost: Duration,
        frame: u64,
        writes: Vec<(ControlId, Vec<u8>)>,
        starts_lit: bool,
    }

    fn id(unit: u8, selector: u8) -> ControlId {
        ControlId { unit, selector }
    }

    /// The camera of the end-to-end test's UVC gadget (unit 4: a decoy at selector 1, a read-only
    /// control at 2, the emitter at 6), plus unit 3 with a control that refuses writes and one
    /// that cannot be put back, tried before the emitter.
    fn gadget() -> SimCamera {
        let mut controls = BTreeMap::new();
        controls.insert(id(4, 1), SimControl::settable(1));
        controls.insert(
            id(4, 2),
            SimControl {
                info: INFO_GET,
                ..SimControl::settable(2)
            },
        );
        controls.insert(
            id(4, 6),
            SimControl {
                max: vec![1, 3, 3, 0, 0, 0, 0, 0, 0],
                res: vec![1; 9],
                lights_at: Some(vec![1, 3, 3, 0, 0, 0, 0, 0, 0]),
                ..SimControl::settable(9)
            },
        );
        controls.insert(
            id(3, 1),
            SimControl {
                set_fails: true,
                ..SimControl::settable(2)
            },
        );
        controls.insert(
            id(3, 2),
            SimControl {
                sticks_after_first_set: true,
                cur: vec![5],
                ..SimControl::settable(1)
            },
        );
        SimCamera {
            controls,
            clock: Duration::ZERO,
            burst_cost: Duration::from_millis(500),
            frame: 0,
            writes: Vec::new(),
            starts_lit: false,
        }
    }

    const ORDER: [ControlId; 5] = [
        ControlId {
            unit: 3,
            selector: 1,
        },
        ControlId {
            unit: 3,
            selector: 2,
        },
        ControlId {
            unit: 4,
            selector: 1,
        },
        ControlId {
            unit: 4,
            selector: 2,
        },
        ControlId {
            unit: 4,
            selector: 6,
        },
    ];

    fn os_error(errno: rustix::io::Errno) -> io::Error {
        io::Error::from_raw_os_error(errno.raw_os_error())
    }

    impl EmitterDevice for SimCamera {
        fn query(
            &mut self,
            control: ControlId,
            request: Request,
            data: &mut [u8],
        ) -> Result<(), XuError> {
            self.clock += Duration::from_millis(1);
            let fail = |errno| XuError {
                control,
                request,
                source: os_error(errno),
            };
            let Some(c) = self.controls.get_mut(&control) else {
                return Err(fail(rustix::io::Errno::NOENT));
            };
            let len = c.cur.len();
            let answer = |data: &mut [u8], v: &[u8]| {
                if data.len() != v.len() {
                    return Err(fail(rustix::io::Errno::INVAL));
                }
                data.copy_from_slice(v);
                Ok(())
            };
            match request {
                Request::GetInfo => answer(data, &[c.info]),
                Request::GetLen => answer(data, &(len as u16).to_le_bytes()),
                Request::GetCur => answer(data, &c.cur.clone()),
                Request::GetMin => answer(data, &c.min.clone()),
                Request::GetMax => answer(data, &c.max.clone()),
                Request::GetRes => answer(data, &c.res.clone()),
                Request::GetDef => answer(data, &c.def.clone()),
                Request::SetCur => {
                    if c.info & INFO_SET == 0 || data.len() != len {
                        return Err(fail(rustix::io::Errno::INVAL));
                    }
                    if c.set_fails || (c.sticks_after_first_set && c.sets > 0) {
                        return Err(fail(rustix::io::Errno::PIPE));
                    }
                    c.sets += 1;
                    c.cur = data.to_vec();
                    self.writes.push((control, data.to_vec()));
                    Ok(())
                }
            }
        }

        fn burst(&mut self, frames: usize) -> Result<Vec<Exposure>, String> {
            self.clock += self.burst_cost;
            let lit = self.starts_lit
                || self
                    .controls
                    .values()
                    .any(|c| c.lights_at.as_ref() == Some(&c.cur));
            Ok((0..frames)
                .map(|_| {
                    self.frame += 1;
                    let noise = ((self.frame * 2_654_435_761) % 17) as f32 - 8.0;
                    if lit && self.frame.is_multiple_of(2) {
                        Exposure {
                            mean: 110.0 + noise,
                            dark_fraction: 0.12 + noise / 400.0,
                        }
                    } else {
                        Exposure {
                            mean: 3.0 + noise.abs() / 4.0,
                            dark_fraction: 0.97 + noise.abs() / 400.0,
                        }
                    }
                })
                .collect())
        }

        fn elapsed(&self) -> Duration {
            self.clock
        }
    }

    fn run(camera: &mut SimCamera, options: &Options) -> Discovery {
        discover(camera, &ORDER, &[], options, &mut |_| {})
    }

    fn report(d: &Discovery, control: ControlId) -> &ControlReport {
        d.controls.iter().find(|c| c.control == control).unwrap()
    }

    #[test]
    fn finds_the_emitter_at_get_max_and_puts_every_other_control_back() {
        let mut camera = gadget();
        let d = run(&mut camera, &Options::default());
        let Outcome::Found {
            control,
            value,
            stats,
        } = &d.outcome
        else {
            panic!("{:?}", d.outcome);
        };
        assert_eq!(*control, id(4, 6));
        assert_eq!(value, &[1, 3, 3, 0, 0, 0, 0, 0, 0]);
        assert!(stats.flashing, "{stats:?}");
        // The emitter is left lit, the decoy put back, the read-only control never written.
        assert_eq!(
            camera.controls[&id(4, 6)].cur,
            vec![1, 3, 3, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(report(&d, id(4, 6)).fate, Fate::Lights);
        assert_eq!(
            report(&d, id(4, 6)).tries.len(),
            1,
            "GET_MAX is tried first"
        );
        assert_eq!(camera.controls[&id(4, 1)].cur, vec![0]);
        assert_eq!(report(&d, id(4, 1)).fate, Fate::Restored);
        assert!(!report(&d, id(4, 1)).tries.is_empty());
        assert_eq!(report(&d, id(4, 2)).fate, Fate::Skipped("read-only".into()));
        assert!(camera.writes.iter().all(|(c, _)| *c != id(4, 2)));
        // Refused writes changed nothing: it reads back as it was.
        assert_eq!(report(&d, id(3, 1)).fate, Fate::Restored);
        assert!(report(&d, id(3, 1)).tries.iter().all(|t| t.result.is_err()));
        // The control that took one write and refused the rest is reported with what it holds.
        let stuck = report(&d, id(3, 2));
        let Fate::Unrestored { left, error } = &stuck.fate else {
            panic!("{:?}", stuck.fate);
        };
        assert_eq!(stuck.original, Some(vec![5]));
        assert_eq!(left.as_deref(), Some(&[0xff][..]));
        assert!(error.contains("SET_CUR refused"), "{error}");
        assert_eq!(d.unrestored().count(), 1);
        // The learnt threshold separates the lit frames (~12% dark) from the unlit (~97%).
        let t = d.dark_threshold.expect("a threshold is learnt");
        assert!((20.0..95.0).contains(&t), "{t}");
    }

    #[test]
    fn a_dry_run_writes_nothing_and_lists_the_values_it_would_try() {
        let mut camera = gadget();
        let d = run(
            &mut camera,
            &Options {
                dry_run: true,
                ..Options::default()
            },
        );
        assert!(camera.writes.is_empty());
        assert_eq!(d.outcome, Outcome::NotFound);
        let emitter = report(&d, id(4, 6));
        assert_eq!(emitter.fate, Fate::Skipped("dry run".into()));
        assert_eq!(emitter.tries[0].value, vec![1, 3, 3, 0, 0, 0, 0, 0, 0]);
        assert!(emitter.tries.len() <= MAX_CANDIDATES);
    }

    #[test]
    fn the_time_cap_stops_the_search_and_leaves_every_control_as_it_was() {
        let mut camera = gadget();
        camera
            .controls
            .get_mut(&id(3, 2))
            .unwrap()
            .sticks_after_first_set = false;
        // Four bursts' worth: the baseline and three tries, then the cap.
        let cap = Duration::from_millis(2000);
        let d = run(
            &mut camera,
            &Options {
                time_cap: cap,
                ..Options::default()
            },
        );
        assert_eq!(d.outcome, Outcome::TimedOut);
        assert!(
            camera.clock <= cap + camera.burst_cost + Duration::from_millis(50),
            "{:?}",
            camera.clock
        );
        for (control, c) in &camera.controls {
            let original = if *control == id(3, 2) {
                vec![5]
            } else {
                vec![0; c.cur.len()]
            };
            assert_eq!(c.cur, original, "{control}");
        }
        assert_eq!(d.unrestored().count(), 0);
        assert!(d.controls.iter().any(|c| c.capped));
    }

    #[test]
    fn a_camera_already_lit_is_left_alone() {
        let mut camera = gadget();
        camera.starts_lit = true;
        // Lit frames alternate with dark ones: half dark is lit enough.
        let d = run(&mut camera, &Options::default());
        assert_eq!(d.outcome, Outcome::AlreadyLit);
        assert!(camera.writes.is_empty());
    }

    #[test]
    fn a_known_setting_is_tried_before_the_search() {
        let mut camera = gadget();
        camera.controls.get_mut(&id(4, 6)).unwrap().lights_at =
            Some(vec![1, 3, 2, 0, 0, 0, 0, 0, 0]);
        let known = [(id(4, 6), vec![1, 3, 2, 0, 0, 0, 0, 0, 0])];
        let d = discover(
            &mut camera,
            &[id(4, 6), id(4, 1)],
            &known,
            &Options::default(),
            &mut |_| {},
        );
        assert!(matches!(d.outcome, Outcome::Found { control, .. } if control == id(4, 6)));
        assert_eq!(
            camera.writes,
            vec![(id(4, 6), vec![1, 3, 2, 0, 0, 0, 0, 0, 0])]
        );
    }

    #[test]
    fn nothing_that_lights_means_not_found_with_everything_restored() {
        let mut camera = gadget();
        camera.controls.get_mut(&id(4, 6)).unwrap().lights_at = None;
        camera
            .controls
            .get_mut(&id(3, 2))
            .unwrap()
            .sticks_after_first_set = false;
        let d = run(&mut camera, &Options::default());
        assert_eq!(d.outcome, Outcome::NotFound);
        assert!(!camera.writes.is_empty());
        assert_eq!(camera.controls[&id(4, 6)].cur, vec![0; 9]);
        assert_eq!(d.unrestored().count(), 0);
    }

    #[test]
    fn candidates_start_with_get_max_stay_in_bounds_and_skip_the_current_value() {
        let len = 9;
        let zero = vec![0u8; len];
        let max = [1, 3, 3, 0, 0, 0, 0, 0, 0];
        let c = candidates(
            len,
            &zero,
            Some(&zero),
            Some(&max),
            Some(&[1; 9]),
            Some(&zero),
        );
        assert_eq!(c[0], max.to_vec());
        assert!(c.len() <= MAX_CANDIDATES);
        assert!(!c.contains(&zero));
        for v in &c {
            assert_eq!(v.len(), len);
            assert!(v.iter().zip(max).all(|(b, m)| *b <= m), "{v:?}");
        }
        // One-byte controls: max, then 1.
        assert_eq!(
            candidates(1, &[0], Some(&[0]), Some(&[0xff]), Some(&[1]), Some(&[0])),
            vec![vec![0xff], vec![1]]
        );
        // No bounds reported: the patterns alone.
        assert_eq!(
            candidates(3, &[0, 0, 0], None, None, None, None),
            vec![vec![1, 3, 3], vec![1, 0, 0]]
        );
        // Wrong-length answers are ignored rather than trusted.
        assert_eq!(
            candidates(2, &[0, 0], None, Some(&[9]), None, None),
            vec![vec![1, 0]]
        );
    }

    #[test]
    fn judging_needs_lit_frames_the_baseline_lacked() {
        let dark = exposure(2.0, 0.99);
        let lit = exposure(120.0, 0.1);
        let all_dark = BurstStats::of(&[dark; 10]);
        let flashing = BurstStats::of(&[lit, dark, lit, dark, lit, dark, lit, dark]);
        let steady = BurstStats::of(&[lit; 8]);
        assert!(flashing.flashing && !steady.flashing && !all_dark.flashing);
        assert!(judge(&all_dark, &flashing));
        assert!(judge(&all_dark, &steady));
        assert!(!judge(&all_dark, &all_dark));
        assert!(!judge(&steady, &steady));
        assert!(!judge(&all_dark, &BurstStats::of(&[])));
        // One lit frame in ten is not lit.
        let mut mostly = [dark; 10];
        mostly[4] = lit;
        assert!(!judge(&all_dark, &BurstStats::of(&mostly)));
        // A lit face on a black background: most pixels stay dark, the brightness tells.
        let face = exposure(70.0, 0.7);
        assert!(judge(&all_dark, &BurstStats::of(&[face; 8])));
        // Daylight with the exposure drifting by 20 levels is not an emitter.
        let day = BurstStats::of(&[exposure(100.0, 0.05); 8]);
        let brighter_day = BurstStats::of(&[exposure(120.0, 0.04); 8]);
        assert!(!judge(&day, &brighter_day));
    }

    #[test]
    fn a_threshold_is_learnt_only_when_lit_and_unlit_frames_are_apart() {
        let dark = exposure(2.0, 0.95);
        let lit = exposure(120.0, 0.25);
        assert_eq!(
            learn_dark_threshold(&[dark; 4], &[lit, dark, lit]),
            Some(60.0)
        );
        let grey = exposure(40.0, 0.55);
        let dim = exposure(40.0, 0.6);
        assert_eq!(learn_dark_threshold(&[grey], &[dim]), None);
        // A lit face on black: 70% of its pixels are dark, so the default 60 would skip it; the
        // learnt threshold keeps it.
        let face = exposure(70.0, 0.70);
        let t = learn_dark_threshold(&[dark; 4], &[face; 4]).unwrap();
        assert!(t > 70.0 && t < 95.0, "{t}");
        assert_eq!(learn_dark_threshold(&[], &[lit]), None);
    }
}
