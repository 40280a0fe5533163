//! A synthetic base for the lab and end-to-end tests: the files a netbooting Pi reads
//! (firmware, device trees, kernels with recognisable contents, `config.txt`,
//! `cmdline.txt`) and the skeleton customisation writes into, without an operating
//! system. It lets a virtual shelf deploy in seconds where a debootstrapped base takes
//! minutes to build; real images come from [`crate::build`]. File sizes are scaled down
//! (a real start.elf is ~3 MB) so a shelf of 96 provisions quickly.
//!
//! **Invariant:** it is registered under its own image name and never passed off as a
//! real distribution: its manifest says suite `synthetic` and lists no packages.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cmd::CommandRunner;
use crate::error::{ImagesError, Result};
use crate::manifest::{Manifest, tree_digest};
use crate::recipe::NetworkStyle;
use crate::store::{Base, ImageStore, version_string};

/// Boot files by name and size; the content is a pattern seeded by the name, so two
/// different files never compare equal and a truncated transfer is detectable.
const BOOT_FILES: &[(&str, usize)] = &[
    ("bootcode.bin", 52_480),
    ("start.elf", 300_000),
    ("fixup.dat", 7_300),
    ("start4.elf", 310_000),
    ("fixup4.dat", 5_400),
    ("bcm2710-rpi-3-b.dtb", 26_000),
    ("bcm2710-rpi-3-b-plus.dtb", 26_600),
    ("bcm2711-rpi-4-b.dtb", 51_000),
    ("bcm2712-rpi-5-b.dtb", 78_000),
    ("kernel7.img", 700_001),
    ("kernel8.img", 900_001),
    ("kernel_2712.img", 950_001),
];

/// Registers the synthetic base `image` (a new version each call) in `store`, built
/// for `flavour` (used only to vary the kernel bytes, so two fixture images boot
/// visibly different kernels).
pub fn register(
    store: &ImageStore,
    runner: &dyn CommandRunner,
    image: &str,
    flavour: &str,
) -> Result<Base> {
    let staging = store.stage(image, runner)?;
    let root = staging.root();
    write_tree(&root, image, flavour)?;
    let digest = tree_digest(&root)?;
    let now = SystemTime::now();
    let recipe_hash = format!("synthetic-{flavour}");
    let manifest = Manifest {
        image: image.to_string(),
        version: version_string(now, &recipe_hash),
        recipe_hash,
        suite: "synthetic".into(),
        arch: "armhf".into(),
        boot_dir: "boot".into(),
        kernel: Some("kernel8.img".into()),
        initramfs: None,
        network: NetworkStyle::Ifupdown,
        // Boot files for every model: device trees and kernels of the 3B to the Pi 5.
        models: crate::recipe::PI_MODELS.iter().map(|m| m.to_string()).collect(),
        console_args: vec!["console=serial0,115200".into()],
        packages: Vec::new(),
        size_bytes: digest.size_bytes,
        file_count: digest.file_count,
        tree_sha256: digest.sha256,
        built_at_unix: now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        build_seconds: 0.0,
    };
    store.commit(staging, &manifest, runner)
}

/// The newest registered version of `image`, or a fresh registration.
pub fn ensure(
    store: &ImageStore,
    runner: &dyn CommandRunner,
    image: &str,
    flavour: &str,
) -> Result<Base> {
    match store.latest(image) {
        Ok(base) => Ok(base),
        Err(ImagesError::NoBase { .. }) => register(store, runner, image, flavour),
        Err(e) => Err(e),
    }
}

/// Writes the firmware every model needs before its own boot directory (the Pi 3B ROM
/// reads `bootcode.bin` from the TFTP root) into `dir`.
pub fn write_firmware(dir: &Path) -> Result<()> {
    write(&dir.join("bootcode.bin"), &pattern("bootcode.bin", 52_480))
}

fn write_tree(root: &Path, image: &str, flavour: &str) -> Result<()> {
    let boot = root.join("boot");
    for (name, len) in BOOT_FILES {
        let (seed, len) = if name.starts_with("kernel") {
            (format!("{name}-{flavour}"), len + kernel_extra(flavour))
        } else {
            (name.to_string(), *len)
        };
        write(&boot.join(name), &pattern(&seed, len))?;
    }
    write(&boot.join("config.txt"), b"# Synthetic Bramble fixture.\nenable_uart=1\n")?;
    write(&boot.join("cmdline.txt"), b"console=serial0,115200 console=tty1 rootwait\n")?;
    write(&root.join("etc/hostname"), b"fixture\n")?;
    write(
        &root.join("etc/os-release"),
        format!(
            "PRETTY_NAME=\"Bramble synthetic fixture {image} ({flavour})\"\nID=bramble-fixture\n"
        )
        .as_bytes(),
    )?;
    write(&root.join("etc/network/interfaces"), b"auto lo\niface lo inet loopback\n")?;
    for dir in ["etc/ssh", "root", "dev", "proc", "sys", "tmp", "var/log"] {
        let p = root.join(dir);
        std::fs::create_dir_all(&p).map_err(|e| ImagesError::io("creating directory", &p, e))?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| ImagesError::io("creating directory", parent, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| ImagesError::io("writing fixture file", path, e))
}

/// Extra kernel bytes per flavour, so a client that only sees transfer sizes (a
/// simulated Pi's TFTP log) can still tell which image it booted.
pub fn kernel_extra(flavour: &str) -> usize {
    flavour.bytes().fold(7usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b))) % 50_000
}

/// `len` bytes of a pattern derived from `seed` (an xorshift stream).
pub fn pattern(seed: &str, len: usize) -> Vec<u8> {
    let mut x: u64 = seed
        .bytes()
        .fold(0x9e37_79b9_7f4a_7c15, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::SystemRunner;

    #[test]
    fn fixture_registers_a_bootable_base_with_distinct_kernels() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path(), &SystemRunner).expect("store");
        let a = register(&store, &SystemRunner, "lab-a", "a").expect("a");
        let b = ensure(&store, &SystemRunner, "lab-b", "b").expect("b");
        assert_eq!(ensure(&store, &SystemRunner, "lab-a", "a").expect("again").version, a.version);
        let ka = std::fs::read(a.root().join("boot/kernel8.img")).expect("kernel a");
        let kb = std::fs::read(b.root().join("boot/kernel8.img")).expect("kernel b");
        assert_ne!(ka.len(), kb.len(), "flavours give kernels of different sizes");
        assert!(a.root().join("boot/bcm2711-rpi-4-b.dtb").is_file());
        assert_eq!(a.manifest.suite, "synthetic");
    }
}
