use super::*;

#[test]
fn accepts_and_normalises_good_paths() {
    for (raw, want) in [
        ("/", "/"),
        ("/a", "/a"),
        ("/a/", "/a"),
        ("/home/ann/notes.txt", "/home/ann/notes.txt"),
        ("/with space/ünïcode", "/with space/ünïcode"),
        ("/.hidden/..dots", "/.hidden/..dots"),
    ] {
        assert_eq!(DfsPath::parse(raw).unwrap().as_str(), want, "{raw}");
    }
}

#[test]
fn refuses_bad_paths() {
    let long_name = format!("/{}", "x".repeat(MAX_NAME_LEN + 1));
    let long_path = "/abc".repeat(MAX_PATH_LEN / 4 + 1);
    let cases: Vec<(&str, PathError)> = vec![
        ("", PathError::NotAbsolute(String::new())),
        ("a/b", PathError::NotAbsolute("a/b".into())),
        ("//a", PathError::EmptyComponent("//a".into())),
        ("/a//b", PathError::EmptyComponent("/a//b".into())),
        ("/a/../b", PathError::DotComponent("/a/../b".into())),
        ("/a/./b", PathError::DotComponent("/a/./b".into())),
        ("/..", PathError::DotComponent("/..".into())),
        ("/a\0b", PathError::Nul),
        (&long_name, PathError::NameTooLong),
        (&long_path, PathError::TooLong),
    ];
    for (raw, want) in cases {
        assert_eq!(DfsPath::parse(raw).unwrap_err(), want, "{raw:?}");
    }
}

#[test]
fn split_join_and_prefix() {
    let path = DfsPath::parse("/home/ann/x").unwrap();
    let (parent, name) = path.split_last().unwrap();
    assert_eq!(parent.as_str(), "/home/ann");
    assert_eq!(name, "x");
    assert_eq!(DfsPath::parse("/a").unwrap().parent().unwrap(), DfsPath::root());
    assert!(DfsPath::root().split_last().is_none());
    assert_eq!(parent.join("x").unwrap(), path);
    assert!(parent.join("..").is_err());
    assert!(parent.join("a/b").is_err());
    assert!(path.starts_with(&parent));
    assert!(path.starts_with(&DfsPath::root()));
    assert!(!DfsPath::parse("/home/annie")
        .unwrap()
        .starts_with(&DfsPath::parse("/home/ann").unwrap()));
    assert_eq!(path.components().collect::<Vec<_>>(), ["home", "ann", "x"]);
}

#[test]
fn deserialising_validates() {
    let ok: DfsPath = serde_json::from_str("\"/a/b\"").unwrap();
    assert_eq!(ok.as_str(), "/a/b");
    assert!(serde_json::from_str::<DfsPath>("\"/a/../b\"").is_err());
}
