//! `facekey ir discover`: run the search of `facekey_core::camera::emitter::discover` on a real
//! camera, show progress on a terminal, print a summary (and with `--report`, everything seen),
//! and store what it found.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use facekey_config::Config;
use facekey_core::camera::descriptors::{self, hex, ExtensionUnit};
use facekey_core::camera::emitter::discover::{
    self as search, BurstStats, Discovery, Event, Fate, Options, Outcome,
};
use facekey_core::camera::emitter::store::{self, Entry};
use facekey_core::camera::emitter::{self, EmitterSetting, LiveCamera};
use facekey_core::camera::{self, Camera};

use super::DiscoverArgs;
use crate::{CliResult, Failure};

pub(super) fn discover(config: &Config, args: &DiscoverArgs) -> CliResult<ExitCode> {
    let node = super::device_or_configured(config, args.device.as_deref())?;
    // Read the stored settings first: an untrusted file stops here, before the camera is touched.
    let mut stored = if args.dry_run {
        None
    } else {
        Some(super::load(config)?)
    };
    let usb = super::usb_id(&node);
    let (units, raw) = descriptors::extension_units_of(&node).map_err(|e| {
        Failure::new(format!(
            "{e}; facekey finds emitter controls in a USB camera's descriptors only"
        ))
    })?;
    let controls = descriptors::discovery_order(&units);
    if args.report {
        print_descriptors(&node, usb.as_deref(), &units, &raw);
    }
    if controls.is_empty() {
        println!(
            "{}: the camera declares no extension-unit control: there is nothing to switch its emitter on with.",
            node.display()
        );
        return Ok(ExitCode::from(1));
    }
    let known = usb
        .as_deref()
        .and_then(emitter::parse_usb_id)
        .map(|(v, p)| emitter::known_settings(v, p))
        .unwrap_or_default();
    // The camera as it is: no stored setting applied.
    let settings = camera::Settings {
        emitter: None,
        ..camera::Settings::from_config(&config.camera)
    };
    let opened = Camera::open(&node, &settings).map_err(|e| Failure::from_error("camera", &e))?;
    let mut device = LiveCamera::new(opened);
    let info = device.info().clone();
    println!(
        "{}: {} ({}), {} {}x{}, {} extension-unit control(s) in {} unit(s){}",
        node.display(),
        info.card,
        usb.as_deref().unwrap_or("not USB"),
        info.format,
        info.width,
        info.height,
        controls.len(),
        units.len(),
        if args.dry_run {
            "; dry run: nothing is written"
        } else {
            ""
        }
    );
    let options = Options {
        time_cap: Duration::from_secs(args.max_seconds),
        dry_run: args.dry_run,
        ..Options::default()
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(controls.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut progress = |event: Event<'_>| {
        let Some(bar) = &bar else { return };
        match event {
            Event::Baseline(stats) => bar.println(format!("before: {}", describe(stats))),
            Event::Control { control, index, .. } => {
                bar.set_position(index as u64);
                bar.set_message(format!("{control}"));
            }
            Event::Trying { control, value } => {
                bar.set_message(format!("{control} = {}", hex(value)))
            }
            Event::Tried {
                control,
                value,
                lit,
            } if lit => bar.println(format!("{control} = {}: lit", hex(value))),
            Event::Tried { .. } => {}
        }
    };
    let found = search::discover(&mut device, &controls, &known, &options, &mut progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if args.report {
        print_report(&found);
    }
    summarise(&found);
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let Outcome::Found { control, value, .. } = &found.outcome else {
        return Ok(ExitCode::from(1));
    };
    let setting = EmitterSetting {
        control: *control,
        value: value.clone(),
        dark_threshold: found.dark_threshold,
    };
    let origin = if known.iter().any(|(c, v)| c == control && v == value) {
        "known"
    } else {
        "discovered"
    };
    let key = store::device_key(&node);
    let Some(settings) = stored.as_mut() else {
        return Ok(ExitCode::from(1));
    };
    settings.put(Entry::new(key.clone(), usb, &setting, origin));
    super::save(
        config,
        settings,
        "ir-discover",
        format!("{key}: {setting} ({origin})"),
    )?;
    println!(
        "Stored for {key} in {}: facekey sets it each time it opens the camera.",
        config.camera.emitter_settings.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn describe(stats: &BurstStats) -> String {
    format!(
        "{} frames, mean brightness {:.0}, {:.0}% dark{}",
        stats.frames,
        stats.mean,
        stats.dark_share * 100.0,
        if stats.flashing { ", flashing" } else { "" }
    )
}

fn summarise(found: &Discovery) {
    if let Some(baseline) = &found.baseline {
        println!("Before anything was changed: {}.", describe(baseline));
    }
    match &found.outcome {
        Outcome::Found {
            control,
            value,
            stats,
        } => {
            println!("Found: {control} = {} lights the emitter ({}).", hex(value), describe(stats));
            if let Some(t) = found.dark_threshold {
                println!("Dark-frame threshold learnt from this camera: mean brightness {t:.0} of 255 (used unless [camera] dark_threshold is set).");
            }
        }
        Outcome::AlreadyLit => println!(
            "The frames are lit already: the emitter works (or daylight hides it; try again in a dim room). Nothing stored."
        ),
        Outcome::NotFound => println!(
            "No control lit the emitter ({} tried). Run `sudo facekey ir discover --report` and send its output \
             (see docs/camera.md, \"IR emitters\").",
            found.controls.len()
        ),
        Outcome::TimedOut => println!(
            "Stopped at the time limit after {} control(s); try again with a larger --max-seconds.",
            found.controls.len()
        ),
        Outcome::NoFrames(why) => println!("No frames to judge, nothing written: {why}."),
    }
    let restored = found
        .controls
        .iter()
        .filter(|c| c.fate == Fate::Restored)
        .count();
    if restored > 0 {
        println!("{restored} control(s) tried and put back as they were.");
    }
    for c in found.unrestored() {
        if let Fate::Unrestored { left, error } = &c.fate {
            println!(
                "WARNING: {} could not be put back to {} ({error}){}. These controls do not survive a power \
                 cycle: suspend and resume or reboot to reset the camera, and include this in a report.",
                c.control,
                c.original.as_deref().map(hex).unwrap_or_else(|| "?".into()),
                left.as_deref()
                    .map(|l| format!("; it holds {}", hex(l)))
                    .unwrap_or_default()
            );
        }
    }
}

fn print_descriptors(
    node: &std::path::Path,
    usb: Option<&str>,
    units: &[ExtensionUnit],
    raw: &[u8],
) {
    println!("== facekey ir discover --report");
    println!("device: {}", node.display());
    println!("by-id key: {}", store::device_key(node));
    println!("usb: {}", usb.unwrap_or("unknown"));
    for unit in units {
        println!(
            "extension unit {} (interface {}): guid {}, {} control(s) declared, selectors {:?}",
            unit.unit, unit.interface, unit.guid, unit.declared_controls, unit.selectors
        );
    }
    println!("descriptors ({} bytes):", raw.len());
    for chunk in raw.chunks(32) {
        println!("  {}", hex(chunk));
    }
}

fn print_report(found: &Discovery) {
    let opt = |v: &Option<Vec<u8>>| v.as_deref().map(hex).unwrap_or_else(|| "-".into());
    for c in &found.controls {
        println!(
            "{}: info {} len {} cur {} min {} max {} res {} def {}: {:?}",
            c.control,
            c.info
                .map(|i| format!("{i:#04x}"))
                .unwrap_or_else(|| "-".into()),
            c.len.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
            opt(&c.original),
            opt(&c.min),
            opt(&c.max),
            opt(&c.res),
            opt(&c.def),
            c.fate
        );
        for t in &c.tries {
            let result = match &t.result {
                Ok(stats) => describe(stats),
                Err(e) => e.clone(),
            };
            println!(
                "    {} -> {result}{}",
                hex(&t.value),
                if t.lit { " LIT" } else { "" }
            );
        }
    }
    println!("outcome: {:?}", found.outcome);
}
