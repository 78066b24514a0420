//! Every `cleanroom.toml` shown in the docs is one cleanroom accepts: each
//! ```toml block of README.md, docs/configuration.md and the facade's crate
//! docs is read as the configuration file, and must load without an error.

use cleanroom_runtime::{Layers, Overrides, CONFIG_ENV};

/// The ```toml blocks of `text` (crate docs: with their `//! ` stripped).
fn toml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.strip_prefix("//!").map(|l| l.strip_prefix(' ').unwrap_or(l)).unwrap_or(line);
        match (&mut current, line.trim()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_documented_configuration_file_is_accepted() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    // Bind mounts must exist: the docs mount `tests/fixtures` beside the file.
    let dir = std::env::temp_dir().join(format!("cleanroom-doc-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("tests/fixtures")).unwrap();
    for doc in ["README.md", "docs/configuration.md", "cleanroom/src/lib.rs"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        // A Cargo.toml excerpt (the README's dev-dependencies, its profile
        // for a faster runtime) is no cleanroom.toml; tests/first_ten_minutes.rs
        // builds with the dev-dependencies instead.
        let cargo_toml = |block: &String| block.starts_with("[dev-dependencies]") || block.starts_with("[profile.");
        let blocks: Vec<String> = toml_blocks(&text).into_iter().filter(|block| !cargo_toml(block)).collect();
        assert!(!blocks.is_empty(), "{doc} shows no cleanroom.toml any more; drop it from this test");
        for (i, block) in blocks.iter().enumerate() {
            let path = dir.join(format!("cleanroom-{i}.toml"));
            std::fs::write(&path, block).unwrap();
            // The only test of this binary: nothing else reads the environment meanwhile.
            std::env::set_var(CONFIG_ENV, &path);
            let layers = Layers::load(Overrides::new()).unwrap_or_else(|e| panic!("{doc}, block {i}: {e}\n{block}"));
            layers.config().unwrap_or_else(|e| panic!("{doc}, block {i}: {e}"));
            for service in layers.file_services() {
                layers.service(&service).unwrap_or_else(|e| panic!("{doc}, block {i}: {e}"));
            }
            std::fs::remove_file(&path).unwrap();
            checked += 1;
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(checked >= 3);
}
