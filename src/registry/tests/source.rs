//! Tests of `source.rs`: the `.install.json` record (tark's format, reading what tark
//! wrote, the atomic write).

use super::*;

#[test]
fn install_json_has_tarks_key_order_and_format() {
    let s = InstallSource {
        is_git: true,
        url: "https://github.com/x/y".into(),
        branch: Some("main".into()),
        path: Some("plugins/a".into()),
        installed_at: "2026-02-18T10:00:00.123456789+00:00".into(),
    };
    assert_eq!(
        s.to_json_pretty().unwrap(),
        "{\n  \"is_git\": true,\n  \"url\": \"https://github.com/x/y\",\n  \"branch\": \"main\",\n  \"path\": \"plugins/a\",\n  \"installed_at\": \"2026-02-18T10:00:00.123456789+00:00\"\n}"
    );
    let local = InstallSource {
        is_git: false,
        url: "/src/p".into(),
        branch: None,
        path: None,
        installed_at: "2026-02-18T10:00:00+00:00".into(),
    };
    assert_eq!(
        local.to_json_pretty().unwrap(),
        "{\n  \"is_git\": false,\n  \"url\": \"/src/p\",\n  \"branch\": null,\n  \"path\": null,\n  \"installed_at\": \"2026-02-18T10:00:00+00:00\"\n}"
    );
    // Round trip through a real file.
    let f = fixture();
    fs::create_dir_all(&f.root).unwrap();
    s.write(&f.root).unwrap();
    assert_eq!(
        fs::read_to_string(f.root.join(INSTALL_FILE)).unwrap(),
        s.to_json_pretty().unwrap()
    );
    assert_eq!(InstallSource::read(&f.root).unwrap(), Some(s));
    assert_eq!(temp_leftovers(&f.root), Vec::<String>::new());
    let install_temps: Vec<String> = fs::read_dir(&f.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{INSTALL_FILE}.tmp-")))
        .collect();
    assert_eq!(install_temps, Vec::<String>::new());
}

#[test]
fn constructors_stamp_time_and_record_absolute_local_paths() {
    let s = InstallSource::local(Path::new("some/rel/dir")).unwrap();
    assert!(!s.is_git);
    assert_eq!(
        PathBuf::from(&s.url),
        std::env::current_dir().unwrap().join("some/rel/dir")
    );
    assert_eq!((s.branch, s.path), (None, None));
    assert!(chrono::DateTime::parse_from_rfc3339(&s.installed_at).is_ok());

    let g = InstallSource::git("https://h/r.git", Some("dev"), None);
    assert!(g.is_git);
    assert_eq!(g.branch.as_deref(), Some("dev"));
    assert_eq!(g.source_path(), None);
    assert!(chrono::DateTime::parse_from_rfc3339(&g.installed_at).is_ok());
}

#[test]
fn reads_tark_written_install_json_with_relative_url() {
    let f = fixture();
    fs::create_dir_all(&f.root).unwrap();
    // Exactly what tark writes for `tark plugin add ./my-plugin`.
    fs::write(
        f.root.join(INSTALL_FILE),
        "{\n  \"is_git\": false,\n  \"url\": \"./my-plugin\",\n  \"branch\": null,\n  \"path\": null,\n  \"installed_at\": \"2026-01-02T03:04:05.678+00:00\"\n}",
    )
    .unwrap();
    let s = InstallSource::read(&f.root).unwrap().unwrap();
    assert_eq!(s.url, "./my-plugin");
    assert_eq!(s.installed_at, "2026-01-02T03:04:05.678+00:00");
    assert_eq!(
        s.source_path().unwrap(),
        std::env::current_dir().unwrap().join("./my-plugin")
    );
    let abs = InstallSource {
        url: "/abs/p".into(),
        ..s.clone()
    };
    assert_eq!(abs.source_path().unwrap(), PathBuf::from("/abs/p"));
    if let Some(home) = dirs::home_dir() {
        let tilde = InstallSource {
            url: "~/p".into(),
            ..s.clone()
        };
        assert_eq!(tilde.source_path().unwrap(), home.join("p"));
    }
    // Missing file is None; garbage is a clear error.
    let other = f.root.join("other");
    fs::create_dir_all(&other).unwrap();
    assert_eq!(InstallSource::read(&other).unwrap(), None);
    fs::write(other.join(INSTALL_FILE), "{not json").unwrap();
    let e = InstallSource::read(&other).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "Invalid install metadata: {}",
            other.join(INSTALL_FILE).display()
        )),
        "{e}"
    );
}
