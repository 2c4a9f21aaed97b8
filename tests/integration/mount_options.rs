//! Every mount option `chitin features` lists, each with its effect seen from inside the
//! container in /proc/self/mountinfo; and data on a bind mount refused.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::TestResult;
use crate::support::{Ctx, bin};

/// What the option is tried on: a fresh tmpfs, a bind of the test's source (a shared tmpfs with
/// a tmpfs at sub/), a tmpfs remounted by a second entry, or a tmpfs over a directory of the
/// image that holds a file.
#[derive(Clone, Copy, PartialEq)]
enum On {
    Tmpfs,
    Bind,
    Remount,
    ImageDir,
}

/// One option, the options its mount has (the ones before it show that it undoes them), and what
/// mountinfo then shows: "+x"/"-x" a per-mount option, "s+x"/"s-x" a superblock option,
/// "p+x"/"p-x" a propagation field (shared, master, unbindable), with "sub:" for the mount
/// below it; "file" the image's file seen on the tmpfs; "nosub" no mount at sub/.
struct Case {
    option: &'static str,
    on: On,
    options: &'static [&'static str],
    shows: &'static [&'static str],
}

const fn case(
    option: &'static str,
    on: On,
    options: &'static [&'static str],
    shows: &'static [&'static str],
) -> Case {
    Case {
        option,
        on,
        options,
        shows,
    }
}

use On::*;

const CASES: &[Case] = &[
    case("async", Tmpfs, &["sync", "async"], &["s-sync"]),
    case(
        "atime",
        Tmpfs,
        &["noatime", "atime"],
        &["+relatime", "-noatime"],
    ),
    case("bind", Bind, &["bind"], &["nosub"]),
    case("defaults", Tmpfs, &["defaults"], &["+rw", "+relatime"]),
    case("dev", Tmpfs, &["nodev", "dev"], &["-nodev"]),
    case(
        "diratime",
        Tmpfs,
        &["nodiratime", "diratime"],
        &["-nodiratime"],
    ),
    case("dirsync", Tmpfs, &["dirsync"], &["s+dirsync"]),
    case("exec", Tmpfs, &["noexec", "exec"], &["-noexec"]),
    // Linux 5.15 dropped mandatory locks; the superblock still shows the flag.
    case("mand", Tmpfs, &["mand"], &["s+mand"]),
    case("noatime", Tmpfs, &["noatime"], &["+noatime"]),
    case("nodev", Tmpfs, &["nodev"], &["+nodev"]),
    case("nodiratime", Tmpfs, &["nodiratime"], &["+nodiratime"]),
    case("noexec", Tmpfs, &["noexec"], &["+noexec"]),
    case("nomand", Tmpfs, &["mand", "nomand"], &["s-mand"]),
    // Clearing relatime leaves another mode as it is.
    case(
        "norelatime",
        Tmpfs,
        &["noatime", "norelatime"],
        &["+noatime"],
    ),
    case(
        "nostrictatime",
        Tmpfs,
        &["strictatime", "nostrictatime"],
        &["+relatime"],
    ),
    case("nosuid", Tmpfs, &["nosuid"], &["+nosuid"]),
    case("nosymfollow", Tmpfs, &["nosymfollow"], &["+nosymfollow"]),
    case(
        "private",
        Bind,
        &["rbind", "shared", "private"],
        &["p-shared", "p-master"],
    ),
    case(
        "ratime",
        Bind,
        &["rbind", "rnoatime", "ratime"],
        &["sub:+relatime", "sub:-noatime"],
    ),
    case("rbind", Bind, &["rbind"], &["sub:+rw"]),
    case("rdev", Bind, &["rbind", "rnodev", "rdev"], &["sub:-nodev"]),
    case(
        "rdiratime",
        Bind,
        &["rbind", "rnodiratime", "rdiratime"],
        &["sub:-nodiratime"],
    ),
    case(
        "relatime",
        Tmpfs,
        &["noatime", "relatime"],
        &["+relatime", "-noatime"],
    ),
    case("remount", Remount, &["remount", "ro"], &["+ro"]),
    case(
        "rexec",
        Bind,
        &["rbind", "rnoexec", "rexec"],
        &["sub:-noexec"],
    ),
    case(
        "rnoatime",
        Bind,
        &["rbind", "rnoatime"],
        &["+noatime", "sub:+noatime"],
    ),
    case(
        "rnodev",
        Bind,
        &["rbind", "rnodev"],
        &["+nodev", "sub:+nodev"],
    ),
    case(
        "rnodiratime",
        Bind,
        &["rbind", "rnodiratime"],
        &["sub:+nodiratime"],
    ),
    case("rnoexec", Bind, &["rbind", "rnoexec"], &["sub:+noexec"]),
    case("rnosuid", Bind, &["rbind", "rnosuid"], &["sub:+nosuid"]),
    case(
        "rnosymfollow",
        Bind,
        &["rbind", "rnosymfollow"],
        &["sub:+nosymfollow"],
    ),
    case("ro", Tmpfs, &["ro"], &["+ro"]),
    case(
        "rprivate",
        Bind,
        &["rbind", "rshared", "rprivate"],
        &["p-shared", "sub:p-shared"],
    ),
    case(
        "rrelatime",
        Bind,
        &["rbind", "rnoatime", "rrelatime"],
        &["sub:+relatime"],
    ),
    case("rro", Bind, &["rbind", "rro"], &["+ro", "sub:+ro"]),
    case("rrw", Bind, &["rbind", "rro", "rrw"], &["sub:+rw"]),
    case(
        "rshared",
        Bind,
        &["rbind", "rshared"],
        &["p+shared", "sub:p+shared"],
    ),
    case(
        "rslave",
        Bind,
        &["rbind", "rshared", "rslave"],
        &["sub:p-shared", "sub:p+master"],
    ),
    case(
        "rstrictatime",
        Bind,
        &["rbind", "rstrictatime"],
        &["sub:-relatime", "sub:-noatime"],
    ),
    case(
        "rsuid",
        Bind,
        &["rbind", "rnosuid", "rsuid"],
        &["sub:-nosuid"],
    ),
    case(
        "rsymfollow",
        Bind,
        &["rbind", "rnosymfollow", "rsymfollow"],
        &["sub:-nosymfollow"],
    ),
    case(
        "runbindable",
        Bind,
        &["rbind", "runbindable"],
        &["p+unbindable", "sub:p+unbindable"],
    ),
    case("rw", Tmpfs, &["ro", "rw"], &["+rw"]),
    case(
        "shared",
        Bind,
        &["rbind", "shared"],
        &["p+shared", "sub:p-shared"],
    ),
    // The source is shared on the host, so its copy in the container is a slave of it.
    case(
        "slave",
        Bind,
        &["rbind", "shared", "slave"],
        &["p-shared", "p+master"],
    ),
    case(
        "strictatime",
        Tmpfs,
        &["strictatime"],
        &["-relatime", "-noatime"],
    ),
    case("suid", Tmpfs, &["nosuid", "suid"], &["-nosuid"]),
    case(
        "symfollow",
        Tmpfs,
        &["nosymfollow", "symfollow"],
        &["-nosymfollow"],
    ),
    case("sync", Tmpfs, &["sync"], &["s+sync"]),
    case("tmpcopyup", ImageDir, &["tmpcopyup"], &["file"]),
    case(
        "unbindable",
        Bind,
        &["rbind", "unbindable"],
        &["p+unbindable", "sub:p-unbindable"],
    ),
];

/// Not an option: a bind that names no atime option keeps its source's (noatime), which the
/// kernel preserves on the remount for `ro`.
const KEEPS_ATIME: Case = case("keeps-atime", Bind, &["rbind", "ro"], &["+noatime", "+ro"]);

/// The config's mounts for the cases: each at /m/<option>.
fn mounts(cases: &[&Case], source: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for c in cases {
        let dest = format!("/m/{}", c.option);
        let tmpfs =
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": c.options});
        match c.on {
            Tmpfs | ImageDir => out.push(tmpfs),
            Bind => out.push(json!({"destination": dest, "type": "bind", "source": source, "options": c.options})),
            Remount => {
                out.push(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs"}));
                out.push(tmpfs);
            }
        }
    }
    out
}

/// A mountinfo line's per-mount options, propagation fields and superblock options.
struct Line<'a> {
    opts: Vec<&'a str>,
    prop: Vec<&'a str>,
    sb: Vec<&'a str>,
}

fn line<'a>(mountinfo: &'a str, mp: &str) -> Option<Line<'a>> {
    let l = mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(mp))?;
    let f: Vec<&str> = l.split(' ').collect();
    let dash = f.iter().position(|x| *x == "-")?;
    Some(Line {
        opts: f[5].split(',').collect(),
        prop: f[6..dash]
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect(),
        sb: f
            .get(dash + 3)
            .map_or(Vec::new(), |s| s.split(',').collect()),
    })
}

fn check(c: &Case, out: &str) -> Result<(), String> {
    let mp = format!("/m/{}", c.option);
    let sub = format!("{mp}/sub");
    for want in c.shows {
        let ok = match *want {
            "file" => out.lines().any(|l| l == "file-in-image"),
            "nosub" => line(out, &sub).is_none(),
            w => {
                let (at, w) = match w.strip_prefix("sub:") {
                    Some(w) => (&sub, w),
                    None => (&mp, w),
                };
                let l = line(out, at).ok_or(format!("no mount at {at}"))?;
                let (list, w) = match w.split_at(1) {
                    ("s", w) => (&l.sb, w),
                    ("p", w) => (&l.prop, w),
                    _ => (&l.opts, w),
                };
                let (present, name) = w.split_at(1);
                list.contains(&name) == (present == "+")
            }
        };
        if !ok {
            return Err(format!("{}: {want}", c.option));
        }
    }
    Ok(())
}

/// A shared tmpfs (noatime) with a tmpfs at sub/, in the test's directory, for the binds;
/// unmounted on drop.
struct Source(std::path::PathBuf);

impl Source {
    fn new(ctx: &Ctx) -> Source {
        let dir = ctx.base.join("source");
        std::fs::create_dir_all(&dir).unwrap();
        let sh = format!(
            "mount -t tmpfs -o noatime src {d} && mkdir {d}/sub && mount -t tmpfs sub {d}/sub && mount --make-rshared {d}",
            d = dir.display()
        );
        assert!(
            Command::new("sh")
                .args(["-c", &sh])
                .status()
                .unwrap()
                .success()
        );
        Source(dir)
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-R").arg(&self.0).status();
    }
}

pub fn every_listed_option_has_its_effect() -> TestResult {
    let ctx = Ctx::new("mountopts")?;
    let out = Command::new(bin()).arg("features").output().unwrap();
    let features: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: Vec<&str> = features["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        // Their effect needs maps and a filesystem the kernel can idmap: idmapped.rs.
        .filter(|o| !matches!(*o, "idmap" | "ridmap"))
        .collect();
    let tried: Vec<&str> = CASES.iter().map(|c| c.option).collect();
    assert_eq!(listed, tried, "each listed option needs a case here");

    let source = Source::new(&ctx);
    let mut b = ctx.bundle("cat /proc/self/mountinfo; cat /m/tmpcopyup/file");
    std::fs::create_dir_all(b.dir.join("rootfs/m/tmpcopyup")).unwrap();
    std::fs::write(b.dir.join("rootfs/m/tmpcopyup/file"), "file-in-image\n").unwrap();
    let all: Vec<&Case> = CASES.iter().chain([&KEEPS_ATIME]).collect();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .extend(mounts(&all, &source.0));
    let out = ctx.run_ok(&b);
    let wrong: Vec<String> = all.iter().filter_map(|c| check(c, &out).err()).collect();
    assert!(wrong.is_empty(), "{wrong:?}\n{out}");

    // mount(2) ignores data on a bind: an unknown option there is refused, naming the field.
    let mut b = ctx.bundle("true");
    b.config["mounts"] = json!([{"destination": "/x", "type": "bind", "source": "/tmp", "options": ["rbind", "mode=700"]}]);
    let (code, _, err) = ctx.run(&b, &ctx.id());
    assert_ne!(code, 0);
    assert!(
        err.contains("mounts[0].options") && err.contains("mode=700"),
        "{err}"
    );
    Ok(())
}

/// The options on runc too, for the differential corpus: the binds of a plain directory of the
/// bundle (its propagation is the host's), and not `ratime` (runc 1.1.5 fails it: runc#5095),
/// `defaults` (runc 1.1.5 passes it to the kernel as data, which refuses it) or `tmpcopyup` (the
/// corpus's rootfs has no directory to copy up).
pub fn corpus_case(base: Value) -> crate::differential::Case {
    let mut case = crate::differential::Case::new("mount-options", base.clone());
    case.prepare = Some(Box::new(move |bundle| {
        let source = bundle.join("vol");
        std::fs::create_dir_all(&source).unwrap();
        let cases: Vec<&Case> = CASES
            .iter()
            .filter(|c| !matches!(c.option, "ratime" | "defaults" | "tmpcopyup"))
            .collect();
        let mut all = base["mounts"].as_array().unwrap().clone();
        all.extend(mounts(&cases, &source));
        json!({ "mounts": all })
    }));
    case
}
