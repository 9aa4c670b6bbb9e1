//! Records the commit the binary is built from, for `weaver --version`: `git rev-parse` when the
//! source is a git checkout, else `WEAVER_BUILD_COMMIT`
//! from the environment (packagers building from a tarball), else `unknown`.
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=WEAVER_BUILD_COMMIT");
    // Re-run when HEAD moves (a commit, a checkout, a branch's ref); `--git-path` resolves the
    // files of worktrees too, where .git is a file. Not on the index: a `git status` would relink.
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = git(&["rev-parse", "--git-path", &head_ref])
    {
        println!("cargo:rerun-if-changed={p}");
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .or_else(|| std::env::var("WEAVER_BUILD_COMMIT").ok())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=WEAVER_COMMIT={commit}");
}
