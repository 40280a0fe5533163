//! Benchmark driver for bench/images.sh: `prepare` pads the cached debootstrapped base
//! to a target size as a new base; `run` times provisioning one Pi root and a shelf of
//! Pi roots with a store's strategy, and a plain `cp -a` of the same base, in one run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use bramble_images::customize::HostKeyType;
use bramble_images::manifest::{self, Manifest};
use bramble_images::provision::strategy;
use bramble_images::{Catalogue, ImageStore, PiIdentity, PiName, Roots, Strategy, SystemRunner};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    match (arg(1), args.len()) {
        ("prepare", 5) => prepare(Path::new(arg(2)), Path::new(arg(3)), arg(4).parse()?),
        ("run", 6) => run(Path::new(arg(2)), Path::new(arg(3)), arg(4), arg(5).parse()?),
        _ => anyhow::bail!(
            "usage: provision_bench prepare CACHE_STORE OUT_STORE MB | run SRC_STORE STORE STRATEGY COUNT"
        ),
    }
}

/// Copies the cached test base into OUT_STORE as `bench-base`, padded to `mb` megabytes by
/// adding copies of its own /usr under /opt/pad-N (same file size mix as a real install).
fn prepare(cache: &Path, out: &Path, mb: u64) -> anyhow::Result<()> {
    let mut recipe = Catalogue::builtin()?.get("debian-bookworm-armhf")?.clone();
    recipe.name = "test-bookworm-armhf".into();
    recipe.packages = vec!["openssh-server".into()];
    recipe.kernel_packages.clear();
    let cache = ImageStore::open(cache, &SystemRunner)?;
    let src = cache.find_by_recipe(&recipe.name, &recipe.hash())?.ok_or_else(|| {
        anyhow::anyhow!("no cached base: run `cargo test -p bramble-images` first")
    })?;
    let store = ImageStore::open(out, &SystemRunner)?;
    let staging = store.stage("bench-base", &SystemRunner)?;
    let root = staging.root();
    sh(&format!("cp -a {}/. {}", src.root().display(), root.display()))?;
    let mut n = 0;
    while manifest::tree_digest(&root)?.size_bytes < mb << 20 {
        sh(&format!(
            "mkdir -p {r}/opt/pad-{n} && cp -a {r}/usr {r}/opt/pad-{n}/",
            r = root.display()
        ))?;
        n += 1;
    }
    let digest = manifest::tree_digest(&root)?;
    let manifest = Manifest {
        image: "bench-base".into(),
        version: format!("padded-{mb}m"),
        size_bytes: digest.size_bytes,
        file_count: digest.file_count,
        tree_sha256: digest.sha256,
        ..src.manifest.clone()
    };
    store.commit(staging, &manifest, &SystemRunner)?;
    println!(
        "prepared bench-base: {} MB in {} files ({} pad copies of /usr)",
        digest.size_bytes >> 20,
        digest.file_count,
        n
    );
    Ok(())
}

fn run(src: &Path, dir: &Path, strategy_name: &str, count: usize) -> anyhow::Result<()> {
    let src_store = ImageStore::open(src, &SystemRunner)?;
    let mut store = ImageStore::open(dir, &SystemRunner)?;
    let forced = match strategy_name {
        "btrfs-snapshot" => Strategy::BtrfsSnapshot,
        "reflink" => Strategy::Reflink,
        _ => Strategy::Copy,
    };
    anyhow::ensure!(forced != Strategy::BtrfsSnapshot || store.strategy() == forced, "not btrfs");
    store = store.with_strategy(forced);
    let base = store.import(&src_store.latest("bench-base")?, &SystemRunner)?;
    sh("sync")?;

    let t = Instant::now();
    sh(&format!("cp -a {} {}/plain-cp", base.root().display(), dir.display()))?;
    let cp_a = t.elapsed().as_secs_f64();
    strategy::delete_tree(&SystemRunner, &dir.join("plain-cp"))?;

    let t = Instant::now();
    strategy::clone_tree(store.strategy(), &SystemRunner, &base.root(), &dir.join("one-clone"))?;
    let one_clone = t.elapsed().as_secs_f64();
    strategy::delete_tree(&SystemRunner, &dir.join("one-clone"))?;

    let roots = Roots::new(&store, &SystemRunner).with_host_keys(&[HostKeyType::Ed25519]);
    let t = Instant::now();
    for i in 0..count {
        roots.reimage(&PiName::new(&format!("pi-{i}"))?, &base, &identity(i))?;
        if i == 0 {
            println!("one_reimage_s={:.2}", t.elapsed().as_secs_f64());
        }
    }
    let shelf = t.elapsed().as_secs_f64();
    println!(
        "strategy={} base_mb={} cp_a_s={cp_a:.2} one_clone_s={one_clone:.2} shelf_n={count} shelf_s={shelf:.2} per_pi_s={:.2}",
        store.strategy(),
        base.manifest.size_bytes >> 20,
        shelf / count as f64
    );
    Ok(())
}

fn identity(i: usize) -> PiIdentity {
    PiIdentity {
        hostname: format!("pi-{i}"),
        public_vlan: 131,
        ipv6_address: format!("2a00:1098:0:84:1000:{:x}::2", i + 1)
            .parse()
            .unwrap_or(std::net::Ipv6Addr::LOCALHOST),
        ipv6_prefix_len: 64,
        ipv6_gateway: "2a00:1098:0:84::1".parse().unwrap_or(std::net::Ipv6Addr::LOCALHOST),
        authorized_keys: vec![],
    }
}

fn sh(cmd: &str) -> anyhow::Result<()> {
    let st = Command::new("sh").args(["-c", cmd]).status()?;
    anyhow::ensure!(st.success(), "`{cmd}` failed");
    Ok(())
}
