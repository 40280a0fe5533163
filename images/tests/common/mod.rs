//! Shared fixtures for the integration tests: the cached debootstrapped base, a btrfs
//! loop device, fake bases for fast state-machine tests, and Pi identities with real keys.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use bramble_images::manifest::Manifest;
use bramble_images::{Base, Catalogue, ImageStore, NetworkStyle, PiIdentity, Recipe, SystemRunner};

/// Fails the test with a clear message unless running as root with `tools` on PATH.
pub fn require(tools: &[&str]) {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests need root (loop devices, chroot, netns)"
    );
    for t in tools {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(ok, "{t} is missing: install it (see scripts/ in the repo for the package list)");
    }
}

/// Runs a shell command line, panicking with its stderr on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().expect("spawn sh");
    assert!(out.status.success(), "`{cmd}` failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The recipe the tests build: the catalogue's bookworm armhf, trimmed to minbase plus
/// openssh-server and without the kernel (which would add minutes under emulation).
pub fn test_recipe() -> Recipe {
    let c = Catalogue::builtin().expect("builtin catalogue");
    let mut r = c.get("debian-bookworm-armhf").expect("bookworm armhf").clone();
    r.name = "test-bookworm-armhf".into();
    r.packages = vec!["openssh-server".into()];
    r.kernel_packages.clear();
    r.boot = Default::default();
    r
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// The debootstrapped base from the cache (`BRAMBLE_IMAGE_CACHE`, default
/// /var/cache/bramble/images), built on first use and keyed by recipe hash.
pub fn cached_base() -> Base {
    require(&["qemu-arm-static"]);
    cached(&test_recipe())
}

/// The catalogue's `debian-bookworm-arm64`, kernel and all, from the same cache: the base
/// a real (QEMU) Pi boots in the end-to-end tests. Built on first use (about 6 minutes).
pub fn bootable_base() -> Base {
    require(&["qemu-aarch64-static"]);
    let catalogue = Catalogue::builtin().expect("catalogue");
    cached(catalogue.get("debian-bookworm-arm64").expect("recipe"))
}

/// `recipe`'s base from the cache, built there (one build at a time) on a miss.
fn cached(recipe: &Recipe) -> Base {
    require(&["debootstrap", "update-binfmts", "chroot"]);
    let _guard = BUILD_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir =
        std::env::var("BRAMBLE_IMAGE_CACHE").unwrap_or_else(|_| "/var/cache/bramble/images".into());
    let store = ImageStore::open(Path::new(&dir), &SystemRunner).expect("open cache store");
    bramble_images::build_cached(recipe, &store, &bramble_images::NoProgress).expect("build base")
}

/// A btrfs filesystem on a loop device, mounted on a temp dir; torn down on drop.
pub struct BtrfsLoop {
    pub mount: tempfile::TempDir,
    image: PathBuf,
    device: String,
}

impl BtrfsLoop {
    pub fn new(size: &str) -> Self {
        require(&["losetup", "mkfs.btrfs", "btrfs"]);
        let image = std::env::temp_dir().join(format!(
            "im-btrfs-{}-{}.img",
            std::process::id(),
            rand_suffix()
        ));
        sh(&format!("truncate -s {size} {}", image.display()));
        let device = sh(&format!("losetup -f --show {}", image.display())).trim().to_string();
        let mount = tempfile::tempdir().expect("tempdir");
        let lp = BtrfsLoop { mount, image, device };
        sh(&format!("mkfs.btrfs -q {}", lp.device));
        sh(&format!("mount {} {}", lp.device, lp.mount.path().display()));
        lp
    }

    pub fn path(&self) -> &Path {
        self.mount.path()
    }
}

impl Drop for BtrfsLoop {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mount.path()).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

fn rand_suffix() -> String {
    bramble_images::customize::random_hex(4).expect("random")
}

/// A fresh ed25519 public key line from ssh-keygen.
pub fn real_public_key(comment: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("k");
    sh(&format!("ssh-keygen -q -t ed25519 -N '' -C {comment} -f {}", key.display()));
    std::fs::read_to_string(key.with_extension("pub")).expect("pub key").trim().to_string()
}

pub fn identity(hostname: &str, keys: Vec<String>) -> PiIdentity {
    PiIdentity {
        hostname: hostname.into(),
        public_vlan: 131,
        ipv6_address: "2a00:1098:0:84:1000:1::2".parse().expect("v6"),
        ipv6_prefix_len: 64,
        ipv6_gateway: "2a00:1098:0:84::1".parse().expect("gw"),
        authorized_keys: keys,
    }
}

/// Registers a tiny fake base named `image` whose `etc/image` file says `image`, plus
/// `pad_bytes` of padding; fast stand-in for state-machine tests.
pub fn fake_base(store: &ImageStore, image: &str, pad_bytes: usize) -> Base {
    let staging = store.stage(image, &SystemRunner).expect("stage");
    let root = staging.root();
    for (f, text) in [
        ("etc/image", image),
        ("etc/ssh/sshd_config", "# test\n"),
        ("boot/firmware/config.txt", ""),
    ] {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    std::fs::write(root.join("pad.bin"), vec![7u8; pad_bytes]).expect("pad");
    let manifest = Manifest {
        image: image.into(),
        version: format!("v-{}", rand_suffix()),
        recipe_hash: "0".repeat(64),
        suite: "test".into(),
        arch: "armhf".into(),
        boot_dir: "boot/firmware".into(),
        kernel: None,
        initramfs: None,
        network: NetworkStyle::SystemdNetworkd,
        models: Vec::new(),
        console_args: vec![],
        packages: vec![],
        size_bytes: pad_bytes as u64,
        file_count: 4,
        tree_sha256: String::new(),
        built_at_unix: 0,
        build_seconds: 0.0,
    };
    store.commit(staging, &manifest, &SystemRunner).expect("commit")
}
