//! The bait HOME: a fake credential in every catalogued location a package could look in, and
//! fake secret environment variables, each holding a value unique to the run. A rule tells
//! that a bait file was opened; the value found in the sink's capture tells that it left.

use std::{
    fs,
    io::{self, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, chown},
    path::{Path, PathBuf},
};

/// What a package could steal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaitKind {
    /// A file under the bait HOME, in the credential catalogue's `category`.
    File { category: &'static str, path: PathBuf },
    /// An environment variable every sandboxed process gets.
    Env { name: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bait {
    pub kind: BaitKind,
    /// Unique to the run and to this bait, so a match in the capture names what leaked.
    pub value: String,
}

/// `(category, path under HOME, contents with {} where the value goes)`: one file per
/// catalogue entry a home directory can hold, in the format real tools write, so that code
/// parsing it finds its secret.
const FILES: &[(&str, &str, &str)] = &[
    (
        "aws",
        ".aws/credentials",
        "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = {}\n",
    ),
    ("aws", ".aws/config", "[default]\nregion = us-east-1\ncredential_process = echo {}\n"),
    (
        "gcloud",
        ".config/gcloud/application_default_credentials.json",
        "{\"type\": \"authorized_user\", \"client_id\": \"premain-vet\", \"refresh_token\": \"{}\"}\n",
    ),
    (
        "azure",
        ".azure/msal_token_cache.json",
        "{\"RefreshToken\": {\"premain-vet\": {\"secret\": \"{}\"}}}\n",
    ),
    (
        "ssh-private-key",
        ".ssh/id_rsa",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
    ),
    (
        "ssh-private-key",
        ".ssh/id_ed25519",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
    ),
    (
        "kubeconfig",
        ".kube/config",
        "apiVersion: v1\nkind: Config\nusers:\n- name: vet\n  user:\n    token: {}\n",
    ),
    ("docker-auth", ".docker/config.json", "{\"auths\": {\"registry.example\": {\"auth\": \"{}\"}}}\n"),
    (
        "registry-auth",
        ".config/containers/auth.json",
        "{\"auths\": {\"quay.example\": {\"auth\": \"{}\"}}}\n",
    ),
    ("netrc", ".netrc", "machine api.example.com login vet password {}\n"),
    (
        "pypirc",
        ".pypirc",
        "[distutils]\nindex-servers = pypi\n\n[pypi]\nusername = __token__\npassword = {}\n",
    ),
    ("git-credentials", ".git-credentials", "https://vet:{}@github.com\n"),
    ("git-credentials", ".config/git/credentials", "https://vet:{}@gitlab.com\n"),
    ("npmrc", ".npmrc", "//registry.npmjs.org/:_authToken={}\n"),
    ("github-cli", ".config/gh/hosts.yml", "github.com:\n    user: vet\n    oauth_token: {}\n"),
    ("vault-token", ".vault-token", "{}\n"),
    (
        "terraform",
        ".terraform.d/credentials.tfrc.json",
        "{\"credentials\": {\"app.terraform.io\": {\"token\": \"{}\"}}}\n",
    ),
    ("dotenv", ".env", "DATABASE_PASSWORD={}\n"),
    ("gnupg", ".gnupg/private-keys-v1.d/premain-vet.key", "Key: (private-key (ecc (d {})))\n"),
    ("wallet", ".config/solana/id.json", "[\"{}\"]\n"),
];

/// Secret variables CI systems and clouds hand to builds.
const ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "NPM_TOKEN",
    "PYPI_API_TOKEN",
    "TWINE_PASSWORD",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "SLACK_BOT_TOKEN",
    "DATABASE_URL",
];

/// Writes every bait file under `home` (created, owned by `uid:gid`, private as real ones
/// are) and returns the baits, files first. `token` makes the values unique to the run.
pub fn plant(home: &Path, token: &str, uid: u32, gid: u32) -> io::Result<Vec<Bait>> {
    let mut baits = Vec::new();
    let mut n = 0;
    let mut next_value = |kind: &str| {
        n += 1;
        // Letters and digits only: every encoding the capture search knows keeps it whole.
        format!("premainvet{token}{kind}{n:02}")
    };
    make_dir(home, uid, gid)?;
    for (category, relative, template) in FILES {
        let value = next_value("f");
        let path = home.join(relative);
        let mut dir = home.to_path_buf();
        let parents: Vec<_> = Path::new(relative).parent().into_iter().flat_map(Path::components).collect();
        for part in parents {
            dir.push(part);
            make_dir(&dir, uid, gid)?;
        }
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        file.write_all(template.replace("{}", &value).as_bytes())?;
        chown(&path, Some(uid), Some(gid))?;
        baits.push(Bait { kind: BaitKind::File { category, path }, value });
    }
    for name in ENV {
        baits.push(Bait { kind: BaitKind::Env { name }, value: next_value("e") });
    }
    Ok(baits)
}

fn make_dir(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => chown(dir, Some(uid), Some(gid)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The variables to give sandboxed processes.
pub fn environment(baits: &[Bait]) -> impl Iterator<Item = (&'static str, &str)> {
    baits.iter().filter_map(|b| match b.kind {
        BaitKind::Env { name } => Some((name, b.value.as_str())),
        BaitKind::File { .. } => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::catalogue::CREDENTIALS;

    #[test]
    fn every_bait_file_is_catalogued_under_its_category_and_every_value_is_unique() {
        let dir = std::env::temp_dir().join(format!("premain-vet-bait-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let home = dir.join("home");
        // SAFETY: no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let baits = plant(&home, "0123abcd", uid, gid).unwrap();
        let mut values: Vec<_> = baits.iter().map(|b| b.value.as_str()).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), baits.len(), "bait values repeat");
        for bait in &baits {
            let BaitKind::File { category, path } = &bait.kind else { continue };
            let text = fs::read_to_string(path).unwrap();
            assert!(text.contains(&bait.value), "{} does not hold its value", path.display());
            let full = path.to_str().unwrap();
            let matched = CREDENTIALS.iter().any(|(cat, glob)| {
                cat == category && globset::Glob::new(glob).unwrap().compile_matcher().is_match(full)
            });
            assert!(matched, "{full} is not catalogued as {category}");
        }
        assert_eq!(environment(&baits).count(), ENV.len());
        fs::remove_dir_all(&dir).unwrap();
    }
}
