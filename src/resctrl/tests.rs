use super::*;

/// A resctrl tree of plain directories: what chitin writes lands in plain files.
fn tree(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("chitin-resctrl-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("info")).unwrap();
    d
}

#[test]
fn made_written_joined_and_removed() {
    let root = tree("own");
    let g = RdtGroup {
        dir: root.join("c1"),
        made: true,
        monitor: Some(root.join("c1/mon_groups/c1")),
    };
    std::fs::create_dir_all(root.join("c1")).unwrap();
    // The kernel makes mon_groups/ with the group; the fake tree needs it made.
    std::fs::create_dir_all(root.join("c1/mon_groups")).unwrap();
    g.make(&["L3:0=f0\nMB:0=50".into(), "L2:0=3".into()])
        .unwrap();
    // The last write wins in a plain file; resctrl would merge both.
    assert_eq!(
        std::fs::read_to_string(root.join("c1/schemata")).unwrap(),
        "L2:0=3\n"
    );
    g.add(42).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("c1/mon_groups/c1/tasks")).unwrap(),
        "42"
    );
    assert!(
        !root.join("c1/tasks").exists(),
        "through the monitoring group"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_group_found_is_left_as_found() {
    let root = tree("found");
    std::fs::create_dir_all(root.join("gold")).unwrap();
    let g = RdtGroup {
        dir: root.join("gold"),
        made: false,
        monitor: None,
    };
    g.make(&[]).unwrap();
    assert!(
        !root.join("gold/schemata").exists(),
        "no schemata asked, none written"
    );
    g.add(7).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("gold/tasks")).unwrap(),
        "7"
    );
    g.remove().unwrap();
    assert!(root.join("gold").is_dir(), "not chitin's to remove");
    // One that chitin made goes, and again is fine.
    let own = RdtGroup {
        dir: root.join("c2"),
        made: true,
        monitor: None,
    };
    own.make(&[]).unwrap();
    own.remove().unwrap();
    own.remove().unwrap();
    assert!(!root.join("c2").exists());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn mountinfo_finds_resctrl() {
    let info = "25 1 0:23 / /sys rw,nosuid - sysfs sysfs rw\n\
                40 25 0:35 / /sys/fs/res\\040ctrl rw,relatime - resctrl resctrl rw,mba_MBps\n";
    assert_eq!(
        mount_point_in(info),
        Some(PathBuf::from("/sys/fs/res ctrl"))
    );
    assert_eq!(
        mount_point_in("25 1 0:23 / /sys rw - sysfs sysfs rw\n"),
        None
    );
}
