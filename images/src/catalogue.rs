//! The image catalogue: recipes compiled into the binary plus an optional override
//! directory whose `*.toml` files replace or add recipes by name.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{ImagesError, Result};
use crate::recipe::Recipe;

/// Recipes shipped in the binary, as (file name, TOML text).
const EMBEDDED: &[(&str, &str)] = &[
    ("raspbian-jessie.toml", include_str!("recipes/raspbian-jessie.toml")),
    ("raspbian-stretch.toml", include_str!("recipes/raspbian-stretch.toml")),
    ("ubuntu-xenial-armhf.toml", include_str!("recipes/ubuntu-xenial-armhf.toml")),
    ("debian-bookworm-armhf.toml", include_str!("recipes/debian-bookworm-armhf.toml")),
    ("debian-bookworm-arm64.toml", include_str!("recipes/debian-bookworm-arm64.toml")),
    ("rescue-bookworm-arm64.toml", include_str!("recipes/rescue-bookworm-arm64.toml")),
];

/// All known recipes, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    recipes: BTreeMap<String, Recipe>,
}

impl Catalogue {
    /// The recipes embedded in the binary.
    pub fn builtin() -> Result<Self> {
        let mut c = Catalogue::default();
        for (file, text) in EMBEDDED {
            c.insert(Recipe::from_toml(text, &format!("<builtin>/{file}"))?);
        }
        Ok(c)
    }

    /// The builtin recipes, then every `*.toml` in `dir` (if it exists), which replaces a
    /// builtin of the same name. Any invalid file fails the whole load, naming the file.
    pub fn with_overrides(dir: &Path) -> Result<Self> {
        let mut c = Catalogue::builtin()?;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(c),
            Err(e) => return Err(ImagesError::io("listing recipe directory", dir, e)),
        };
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .map_err(|source| ImagesError::RecipeRead { path: path.clone(), source })?;
            let recipe = Recipe::from_toml(&text, &path.display().to_string())?;
            tracing::info!(recipe = %recipe.name, file = %path.display(), "loaded recipe override");
            c.insert(recipe);
        }
        Ok(c)
    }

    pub fn insert(&mut self, recipe: Recipe) {
        self.recipes.insert(recipe.name.clone(), recipe);
    }

    pub fn get(&self, name: &str) -> Result<&Recipe> {
        self.recipes.get(name).ok_or_else(|| ImagesError::UnknownRecipe { name: name.to_string() })
    }

    /// Recipes in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Recipe> {
        self.recipes.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_recipes_all_parse_and_cover_the_offered_images() {
        let c = Catalogue::builtin().expect("builtin recipes are valid");
        let names: Vec<_> = c.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "debian-bookworm-arm64",
                "debian-bookworm-armhf",
                "raspbian-jessie",
                "raspbian-stretch",
                "rescue-bookworm-arm64",
                "ubuntu-xenial-armhf"
            ]
        );
        // The rescue system boots whatever debian-bookworm-arm64 boots, and has mount.nfs.
        let (rescue, arm64) = (
            c.get("rescue-bookworm-arm64").expect("rescue"),
            c.get("debian-bookworm-arm64").expect("arm64"),
        );
        assert_eq!(rescue.boot, arm64.boot);
        assert_eq!(
            (&rescue.kernel_packages, &rescue.boot_dir, &rescue.console),
            (&arm64.kernel_packages, &arm64.boot_dir, &arm64.console)
        );
        assert!(
            rescue.packages.iter().any(|p| p == "nfs-common")
                && rescue.packages.iter().any(|p| p == "openssh-server")
        );
        let stretch = c.get("raspbian-stretch").expect("stretch");
        assert_eq!(stretch.suite, "stretch");
        assert_eq!(stretch.apt_sources[0].suite, "stretch");
        assert!(stretch.kernel_packages.contains(&"raspberrypi-bootloader".to_string()));
        // Debian 12's kernel cannot boot a Pi 5; the rescue system boots what it boots.
        assert_eq!(arm64.models, ["3b", "3b+", "4b"]);
        assert_eq!(rescue.models, arm64.models);
        let xenial = c.get("ubuntu-xenial-armhf").expect("xenial");
        assert_eq!(xenial.mirror, "http://ports.ubuntu.com/ubuntu-ports");
        assert_eq!(c.get("debian-bookworm-arm64").expect("arm64").qemu_arch(), "aarch64");
    }

    #[test]
    fn override_directory_replaces_by_name_and_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = include_str!("recipes/debian-bookworm-armhf.toml").replace("\"12\"", "\"12.9\"");
        std::fs::write(dir.path().join("mine.toml"), text).expect("write");
        let c = Catalogue::with_overrides(dir.path()).expect("loads");
        assert_eq!(c.get("debian-bookworm-armhf").expect("present").version, "12.9");

        let bad = dir.path().join("zz-bad.toml");
        std::fs::write(&bad, "name = \"x\"\nsurprise = 1\n").expect("write");
        let err = Catalogue::with_overrides(dir.path()).expect_err("unknown field").to_string();
        assert!(err.contains("zz-bad.toml"), "{err}");
    }

    #[test]
    fn validation_rejects_bad_values_with_reasons() {
        let base = include_str!("recipes/debian-bookworm-armhf.toml");
        let cases = [
            ("arch = \"armhf\"", "arch = \"x86\"", "arch"),
            ("boot_dir = \"boot/firmware\"", "boot_dir = \"../etc\"", "boot_dir"),
            ("mirror = \"http://deb.debian.org/debian\"", "mirror = \"ftp://x\"", "mirror"),
            ("\"openssh-server\",", "\"openssh-server; rm -rf /\",", "package"),
            ("models = [\"3b\", \"3b+\", \"4b\"]", "models = [\"3b\", \"6\"]", "models"),
            ("models = [\"3b\", \"3b+\", \"4b\"]", "models = []", "models"),
            ("models = [\"3b\", \"3b+\", \"4b\"]", "models = [\"4b\", \"4b\"]", "models"),
        ];
        for (from, to, word) in cases {
            let err =
                Recipe::from_toml(&base.replace(from, to), "case.toml").expect_err(to).to_string();
            assert!(err.contains("case.toml") && err.contains(word), "{to}: {err}");
        }
    }

    #[test]
    fn hash_is_stable_and_sensitive_to_content() {
        let c = Catalogue::builtin().expect("builtin");
        let mut r = c.get("debian-bookworm-armhf").expect("armhf").clone();
        let h = r.hash();
        assert_eq!(h, c.get("debian-bookworm-armhf").expect("again").hash());
        // Which models a base boots changes nothing built: cached bases stay valid.
        r.models.push("5".into());
        assert_eq!(h, r.hash());
        r.packages.push("vim".into());
        assert_ne!(h, r.hash());
        assert_eq!(h.len(), 64);
    }
}
