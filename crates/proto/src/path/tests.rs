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

/// Property test over random inputs built from the characters that matter
/// (separators, dots, NUL, multi-byte UTF-8): parsing never panics, and
/// whatever it accepts is canonical and within the limits.
#[test]
fn random_paths_never_panic_and_accepted_ones_are_canonical() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0df5);
    let alphabet = [
        "/",
        "/",
        ".",
        "..",
        "a",
        "b",
        "\0",
        "é",
        "😀",
        " ",
        "\\",
        "x".repeat(200).leak(),
    ];
    for _ in 0..20_000 {
        let pieces = rng.gen_range(0..12);
        let raw: String = (0..pieces)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        let Ok(path) = DfsPath::parse(&raw) else { continue };
        let text = path.as_str();
        assert!(text.starts_with('/'), "{raw:?}");
        assert!(text.len() <= MAX_PATH_LEN);
        assert!(!text.contains('\0'));
        assert!(text == "/" || !text.ends_with('/'), "{raw:?}");
        for name in path.components() {
            assert!(
                !name.is_empty() && name != "." && name != ".." && name.len() <= MAX_NAME_LEN,
                "{raw:?}"
            );
        }
        assert_eq!(DfsPath::parse(text).unwrap(), path, "parsing is idempotent for {raw:?}");
        if let Some((parent, name)) = path.split_last() {
            assert_eq!(parent.join(name).unwrap(), path);
            assert!(path.starts_with(&parent));
        }
    }
}

#[test]
fn new_names_refuse_control_characters_and_escaping_shows_them() {
    for raw in [
        "/a\u{1b}[31mred",
        "/a\rb",
        "/a\nforged",
        "/a\u{7f}",
        "/d\u{9b}x/b",
        "/a\tb",
    ] {
        let path = DfsPath::parse(raw).expect("stored names stay addressable");
        let error = path.check_new().unwrap_err();
        assert!(matches!(error, PathError::ControlCharacter(_)), "{raw:?}");
        assert!(!error.to_string().chars().any(char::is_control), "{error}");
    }
    DfsPath::parse("/ünïcode and space").unwrap().check_new().unwrap();
    assert_eq!(escape_controls("plain"), "plain");
    assert_eq!(escape_controls("a\u{1b}[2Jb\nc\r"), "a\\u{1b}[2Jb\\nc\\r");
    // Escaping twice changes nothing more.
    assert_eq!(escape_controls(&escape_controls("a\nb")), "a\\nb");
}
