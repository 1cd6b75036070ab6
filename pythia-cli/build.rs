//! Build information for `pythia --version`: the version, the git commit and the enabled
//! features, as one line in the `PYTHIA_VERSION_LINE` environment variable of the build.
//!
//! The commit comes from `PYTHIA_GIT_HASH` when set (a Docker build, whose context has no
//! `.git`: `--build-arg PYTHIA_GIT_HASH=$(git rev-parse --short HEAD)`), else from
//! `git rev-parse`, else it is `unknown`: a build from a source tarball still works.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=PYTHIA_GIT_HASH");
    let hash = match std::env::var("PYTHIA_GIT_HASH") {
        Ok(h) if !h.trim().is_empty() => Some(h.trim().to_owned()),
        _ => {
            // Rebuild when the commit changes: HEAD (a branch switch) and the branch's ref (a
            // commit), wherever this checkout or worktree keeps them. Only files that exist: a
            // missing one would make cargo rerun this script on every build.
            let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
            watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
            for path in &watched {
                if let Some(p) = git(&["rev-parse", "--git-path", path])
                    && std::path::Path::new(&p).exists()
                {
                    println!("cargo:rerun-if-changed={p}");
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"])
        }
    };
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| {
            k.strip_prefix("CARGO_FEATURE_")
                .map(|f| f.to_ascii_lowercase().replace('_', "-"))
        })
        .filter(|f| f != "default")
        .collect();
    features.sort();
    let features = if features.is_empty() {
        "none".to_owned()
    } else {
        features.join(", ")
    };
    println!(
        "cargo:rustc-env=PYTHIA_VERSION_LINE={} (commit {}; features: {})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
        hash.as_deref().unwrap_or("unknown"),
        features
    );
}
