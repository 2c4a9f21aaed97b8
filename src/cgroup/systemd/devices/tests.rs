use super::*;
use crate::cgroup::systemd::props::for_version;

use DeviceRule as R;

fn allow_list(props: &[Property]) -> (String, Vec<(String, String)>) {
    let policy = props[0].1.as_str().unwrap().to_owned();
    let Value::Array(_, items) = &props[1].1 else {
        panic!("DeviceAllow is an array")
    };
    (policy, pairs(items))
}

fn pairs(items: &[Value]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|i| match i {
            Value::Struct(f) => (
                f[0].as_str().unwrap().to_owned(),
                f[1].as_str().unwrap().to_owned(),
            ),
            _ => panic!("(ss)"),
        })
        .collect()
}

fn owned(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn v1_lists_what_the_kernel_holds() {
    let rules = [
        R::of(false, 'a', None, None, "rwm"),
        R::of(true, 'c', Some(1), Some(3), "rwm"),
        R::of(true, 'c', Some(136), None, "rwm"),
        R::of(true, 'b', None, None, "m"),
        R::of(true, 'c', None, Some(5), "rwm"),
        // Taken back from the same device, then given again: the kernel unites them.
        R::of(false, 'c', Some(1), Some(3), "w"),
        R::of(true, 'c', Some(1), Some(3), "r"),
        // Not the same device as the wider allow: the kernel keeps the allow whole.
        R::of(false, 'c', Some(136), Some(1), "w"),
    ];
    let (policy, list) = allow_list(&properties(&rules, false));
    assert_eq!(policy, "strict");
    let want = [
        ("/dev/char/1:3", "rm"),
        ("char-136", "rwm"),
        ("block-*", "m"),
    ];
    assert_eq!(list, owned(&want), "*:5 has no systemd form: left out");
}

#[test]
fn v1_blacklists_are_never_wider() {
    let all = R::of(true, 'a', None, None, "rwm");
    assert_eq!(
        allow_list(&properties(std::slice::from_ref(&all), false)),
        ("auto".into(), vec![])
    );
    // A later allow of everything of a kind does not take back the kernel's exception for 1:3:
    // systemd must not be told "allow all".
    let but = [
        all,
        R::of(false, 'c', Some(1), Some(3), "rwm"),
        R::of(true, 'c', None, None, "rwm"),
    ];
    assert_eq!(
        allow_list(&properties(&but, false)),
        ("strict".into(), vec![])
    );
}

#[test]
fn v2_lists_every_allow_in_its_widest_form() {
    let rules = [
        R::of(true, 'c', Some(7), Some(7), "rwm"),
        R::of(false, 'a', None, None, "rwm"),
        R::of(true, 'c', Some(1), Some(3), "rwm"),
        R::of(true, 'c', None, Some(5), "r"),
        R::of(false, 'c', Some(1), Some(3), "w"),
        R::of(true, 'a', Some(10), Some(200), "rw"),
        R::of(true, 'c', Some(1), Some(3), "r"),
    ];
    let (policy, list) = allow_list(&properties(&rules, true));
    assert_eq!(policy, "strict");
    let want = [
        ("/dev/char/1:3", "rwm"),
        ("char-*", "r"),
        ("/dev/char/10:200", "rw"),
        ("/dev/block/10:200", "rw"),
    ];
    assert_eq!(
        list,
        owned(&want),
        "before the reset: nothing; denies: chitin's program"
    );
    let blacklist = [
        R::of(true, 'a', None, None, "rwm"),
        R::of(false, 'c', Some(1), Some(3), "rwm"),
    ];
    assert_eq!(
        allow_list(&properties(&blacklist, true)),
        ("auto".into(), vec![])
    );
}

#[test]
fn majors_by_name_before_systemd_240() {
    let proc_devices = "Character devices:\n  1 mem\n136 pts\n\nBlock devices:\n  8 sd\n";
    let rules = [
        R::of(false, 'a', None, None, "rwm"),
        R::of(true, 'c', Some(136), None, "rwm"),
        R::of(true, 'c', Some(99), None, "rwm"),
        R::of(true, 'b', Some(8), None, "r"),
        R::of(true, 'c', Some(1), Some(3), "rwm"),
    ];
    for (v2, unnamed) in [(false, None), (true, Some(("char-*", "rwm")))] {
        let props = for_version(properties(&rules, v2), 239, &|| proc_devices.into(), v2);
        let (_, list) = allow_list(&props);
        let mut want = owned(&[("char-pts", "rwm")]);
        want.extend(unnamed.map(|(a, b)| (a.to_string(), b.to_string())));
        want.extend(owned(&[("block-sd", "r"), ("/dev/char/1:3", "rwm")]));
        assert_eq!(list, want, "v2: {v2}");
    }
}

#[test]
fn properties_systemd_does_not_know_are_left_out() {
    let props = |names: &[&str]| -> Vec<Property> {
        names.iter().map(|n| prop(n, Value::U64(1))).collect()
    };
    let all = ["TasksMax", "CPUQuotaPeriodUSec", "AllowedCPUs", "MemoryMin"];
    let kept = |v: u32| -> Vec<String> {
        for_version(props(&all), v, &String::new, true)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    assert_eq!(kept(239), ["TasksMax"]);
    assert_eq!(kept(242), ["TasksMax", "CPUQuotaPeriodUSec", "MemoryMin"]);
    assert_eq!(kept(252), all);
}
