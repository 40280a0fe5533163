//! The real `debian-bookworm-arm64` base (debootstrap, kernel under qemu-user) holds
//! everything a Pi with no SD card needs: a kernel and its modules, an initramfs that
//! mounts an NFS root and carries the Pis' NIC drivers and virtio-net, the Pi firmware,
//! per-model device trees, and a `config.txt` that names them; its manifest records the
//! boot files and its size. A QEMU Pi boots this base in `tests/tests/real_boot.rs`.

mod common;

use std::process::Command;

#[test]
fn bookworm_arm64_base_boots_without_an_sd_card() {
    let base = common::bootable_base();
    let m = &base.manifest;
    let boot = base.root().join(&m.boot_dir);
    let kernel = m.kernel.clone().expect("manifest names the kernel");
    let initrd = m.initramfs.clone().expect("manifest names the initramfs");
    assert_eq!(m.boot_dir, "boot/firmware");

    // config.txt names exactly what the manifest records, and every file is there.
    let config = std::fs::read_to_string(boot.join("config.txt")).expect("config.txt");
    let lines: Vec<&str> = config.lines().collect();
    assert!(lines.contains(&format!("kernel={kernel}").as_str()), "{config}");
    assert!(lines.contains(&format!("initramfs {initrd} followkernel").as_str()), "{config}");
    assert!(lines.contains(&"arm_64bit=1"), "{config}");
    let mut wanted = vec![kernel.clone(), initrd.clone()];
    wanted.extend(
        ["bootcode.bin", "start.elf", "fixup.dat", "start4.elf", "fixup4.dat"].map(String::from),
    );
    wanted.extend(
        ["bcm2837-rpi-3-b.dtb", "bcm2837-rpi-3-b-plus.dtb", "bcm2711-rpi-4-b.dtb"]
            .map(String::from),
    );
    for f in &wanted {
        let meta = std::fs::metadata(boot.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(meta.len() > 0, "{f} is empty");
    }
    for dt in ["bcm2837-rpi-3-b.dtb", "bcm2837-rpi-3-b-plus.dtb", "bcm2711-rpi-4-b.dtb"] {
        assert!(config.contains(&format!("device_tree={dt}\n")), "{dt} not named:\n{config}");
    }

    // The kernel's modules are installed for the kernel that boots.
    let kver = kernel.strip_prefix("vmlinuz-").expect("versioned kernel name");
    assert!(base.root().join("usr/lib/modules").join(kver).join("modules.dep").is_file());

    // The initramfs mounts an NFS root and loads the NICs of the 3B, 3B+, 4B and QEMU.
    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!("zcat {} | cpio -it --quiet", boot.join(&initrd).display()))
        .output()
        .expect("list initramfs");
    assert!(listing.status.success(), "{}", String::from_utf8_lossy(&listing.stderr));
    let files = String::from_utf8_lossy(&listing.stdout);
    for module in
        ["smsc95xx.ko", "lan78xx.ko", "genet.ko", "virtio_mmio.ko", "virtio_net.ko", "nfsv3.ko"]
    {
        assert!(files.lines().any(|l| l.ends_with(module)), "{module} is not in the initramfs");
    }
    // netconsole is carried (loaded by the init-premount script once eth0 exists, not
    // force-loaded), with the script that logs the NFS root mount.
    assert!(files.lines().any(|l| l.ends_with("netconsole.ko")), "netconsole.ko is not in it");
    for tool in [
        "usr/bin/ipconfig",
        "usr/bin/nfsmount",
        "usr/bin/dmesg",
        "scripts/nfs",
        "scripts/init-premount/bramble-netconsole",
        "scripts/nfs-bottom/bramble-nfsroot",
    ] {
        assert!(files.lines().any(|l| l.trim_start_matches("./").starts_with(tool)), "no {tool}");
    }
    let conf = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zcat {} | cpio -i --quiet --to-stdout conf/conf.d/bramble-netboot.conf conf/modules",
            boot.join(&initrd).display()
        ))
        .output()
        .expect("read initramfs conf");
    let conf = String::from_utf8_lossy(&conf.stdout);
    assert!(conf.contains("BOOT=nfs"), "{conf}");
    assert!(conf.contains("genet") && conf.contains("virtio_net"), "{conf}");

    // The running system forwards journald's notice and above to the kernel log.
    let journald = std::fs::read_to_string(
        base.root().join("etc/systemd/journald.conf.d/bramble-console.conf"),
    )
    .expect("journald drop-in");
    assert!(journald.contains("ForwardToKMsg=yes\nMaxLevelKMsg=notice\n"), "{journald}");

    // No per-machine identity in a base; its size is recorded (and kept modest).
    assert!(!base.root().join("etc/ssh/ssh_host_ed25519_key").exists());
    assert!(m.size_bytes > 100 << 20 && m.size_bytes < 800 << 20, "size {}", m.size_bytes);
    println!(
        "base {} {}: {} MB, built in {:.0} s",
        m.image,
        m.version,
        m.size_bytes >> 20,
        m.build_seconds
    );
}
