//! A throwaway PostgreSQL server for the tests: `initdb` in a temporary folder, `pg_ctl start`
//! on a free port on 127.0.0.1, stopped (immediate) when dropped. Runs the server as the
//! `postgres` user when the tests run as root. Returns `None` with a loud message where
//! PostgreSQL is not installed, unless `TIDELOG_PG_REQUIRED=1` (CI), where that fails.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct PgServer {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub port: u16,
    as_postgres: bool,
}

fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().or_else(|| {
        let out = Command::new("pg_config").arg("--bindir").output().ok()?;
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        p.join("initdb").exists().then_some(p)
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

impl PgServer {
    /// Starts a server, or `None` (after a loud message) where PostgreSQL is not installed.
    pub fn start() -> Option<PgServer> {
        let Some(bin) = find_bin() else {
            let msg = "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no pg_config): \
                       SKIPPING the PostgreSQL tests; install postgresql and postgresql-contrib (.ci/postgres does)";
            if std::env::var("TIDELOG_PG_REQUIRED").is_ok_and(|v| v == "1") {
                panic!("{msg}");
            }
            eprintln!("\n!!!!!!!!!!!!!!!!\n{msg}\n!!!!!!!!!!!!!!!!\n");
            return None;
        };
        let dir = tempfile::Builder::new().prefix("tidelog-pg-").tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(st.success(), "chown of the PostgreSQL test folder failed");
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let s = PgServer { bin, dir, port, as_postgres };
        let data = s.data();
        let out = s.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
        );
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        s.start_again();
        Some(s)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let exe = self.bin.join(tool);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        c.args(args).current_dir(self.dir.path()).output().unwrap()
    }

    /// Starts the server (again) on the same port and folder, and waits until it accepts.
    pub fn start_again(&self) {
        let data = self.data();
        let log = self.dir.path().join("server.log");
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c full_page_writes=off -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        let out = self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &opts, "-w", "-t", "30", "start"],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while postgres::Client::connect(&self.url("postgres"), postgres::NoTls).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL did not accept connections");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `pg_ctl stop -m immediate`: the server dies as in a crash.
    pub fn stop_immediate(&self) {
        let data = self.data();
        let out = self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new database, returning its URL.
    pub fn create_db(&self, name: &str) -> String {
        let mut c = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.url(name)
    }

    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(db), postgres::NoTls).unwrap()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        if data.join("postmaster.pid").exists() {
            let _ = self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
        }
    }
}

/// Every message id of a store in the database with how often it is there, and the positions.
pub fn pg_ids(c: &mut postgres::Client, store: &str) -> Vec<String> {
    c.query("SELECT id FROM tidelog.messages WHERE store = $1 ORDER BY rid", &[&store])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

pub fn child_env() -> Option<String> {
    std::env::var("TIDELOG_PG_CHILD").ok()
}

/// Re-runs this test binary as a child running test `name` with `arg` in its environment.
pub fn spawn_child(name: &str, arg: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("TIDELOG_PG_CHILD", arg)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

pub fn ids_file(dir: &Path) -> PathBuf {
    dir.join("acked.txt")
}
