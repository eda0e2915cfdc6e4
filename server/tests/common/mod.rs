//! Harness for the server tests: a catalog in a temp dir with `test-m1` (a small lake), a real
//! server on an ephemeral loopback port, and HTTP clients (one bound to 127.0.0.2 to play a
//! client on another address).
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use m1_engine::{Catalog, EnvConfig, Property, PropertyType};
use serde_json::{Value, json};

pub const ADMIN: &str = "admin";
pub const PASSWORD: &str = "passphrase";

pub struct Harness {
    pub home: tempfile::TempDir,
    pub server: Option<m1_server::Running>,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub other_ip: reqwest::Client,
}

/// A response: status and body parsed as JSON (Null when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub text: String,
    pub json: Value,
}

impl Harness {
    /// A server over a catalog holding `test-m1` with 100 records (`name`, `n`).
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut m1_server::ServeOptions)) -> Harness {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let cat = Catalog::open(&path).unwrap();
            cat.create("test-m1", None, EnvConfig::default()).unwrap();
            let env = cat.open_env("test-m1").unwrap();
            env.add_properties(&[
                Property::new("name", PropertyType::String),
                Property::new("n", PropertyType::Integer),
                Property::new("session.id", PropertyType::String),
            ])
            .unwrap();
            let rows = (0..100).map(|i| json!({"name": format!("row{i}"), "n": i}).as_object().unwrap().clone());
            env.append_json(rows).unwrap();
        })
        .await
        .unwrap();
        let mut options = m1_server::ServeOptions {
            port: 0,
            home: Some(home.path().to_path_buf()),
            max_body_bytes: 1 << 20,
            read_timeout: Duration::from_secs(2),
            signup: true,
            // The tests publish files they write under the temporary directory.
            allow_read: vec![std::env::temp_dir()],
            ..Default::default()
        };
        tune(&mut options);
        let server = m1_server::start(options).await.unwrap();
        let addr = server.addr;
        let client = reqwest::Client::builder()
            .resolve("test-m1.localhost", addr)
            .resolve("ops.localhost", addr)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let other_ip = reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Harness { home, server: Some(server), addr, client, other_ip }
    }

    /// `http://127.0.0.1:PORT/<prefix>/<path>`.
    pub fn url(&self, prefix: &str, path: &str) -> String {
        format!("http://{}/{prefix}/{path}", self.addr)
    }

    /// Calls an environment endpoint by path prefix (`/test-m1/...`).
    pub async fn env(&self, method: &str, path: &str, token: Option<&str>, params: &[(&str, &str)]) -> Resp {
        call(&self.client, method, &self.url("test-m1", path), token, params).await
    }

    /// Calls an upload endpoint (`stage/put`): parameters in the query, `body` as the body.
    pub async fn upload(&self, path: &str, token: Option<&str>, params: &[(&str, &str)], body: &'static str) -> Resp {
        let mut req = self.client.post(self.url("test-m1", path)).query(params).body(body);
        if let Some(t) = token {
            req = req.header("m1-auth-token", t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, text, json }
    }

    /// Calls an ops endpoint (`/ops/...`).
    pub async fn ops(&self, method: &str, path: &str, token: Option<&str>, params: &[(&str, &str)]) -> Resp {
        call(&self.client, method, &self.url("ops", path), token, params).await
    }

    /// Creates the first admin of `test-m1` as the operator does (`m1 init test-m1`) and
    /// returns its token.
    pub async fn init_admin(&self) -> String {
        let home = self.home.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let env = m1::Environment::open_in(&Catalog::open(&home).unwrap(), "test-m1").unwrap();
            m1_server::init_admin(std::sync::Arc::new(env), ADMIN, PASSWORD).unwrap();
        })
        .await
        .unwrap();
        self.login(ADMIN, PASSWORD).await
    }

    /// Makes `user` the owner of the ops account `default` as the operator does (`m1 owner`)
    /// and returns their ops token.
    pub async fn ops_owner(&self, user: &str) -> String {
        let (home, name) = (self.home.path().to_path_buf(), user.to_string());
        tokio::task::spawn_blocking(move || m1_server::init_owner(&home, &name, PASSWORD).unwrap()).await.unwrap();
        let r = self.ops("POST", "auth", None, &[("username", user), ("password", PASSWORD)]).await;
        assert_eq!(r.status, 200, "ops auth {user}: {r:?}");
        r.json["token"].as_str().unwrap().to_string()
    }

    /// A token for an environment user.
    pub async fn login(&self, user: &str, password: &str) -> String {
        let r = self.env("POST", "auth", None, &[("username", user), ("password", password)]).await;
        assert_eq!(r.status, 200, "auth {user}: {r:?}");
        r.json["token"].as_str().unwrap().to_string()
    }

    /// Adds an environment user with `rights` (as admin).
    pub async fn add_user(&self, admin: &str, user: &str, rights: &[&str]) {
        let rights = serde_json::to_string(rights).unwrap();
        let r = self
            .env("POST", "user/add", Some(admin), &[("username", user), ("password", PASSWORD), ("rights", &rights)])
            .await;
        assert_eq!(r.status, 200, "user/add {user}: {r:?}");
    }

    /// Signs up an ops user and returns their token.
    pub async fn ops_signup(&self, user: &str) -> String {
        let r = self.ops("POST", "signup", None, &[("username", user), ("password", PASSWORD)]).await;
        assert_eq!(r.status, 200, "signup {user}: {r:?}");
        let r = self.ops("POST", "auth", None, &[("username", user), ("password", PASSWORD)]).await;
        assert_eq!(r.status, 200, "ops auth {user}: {r:?}");
        r.json["token"].as_str().unwrap().to_string()
    }
}

/// One request: GET sends parameters in the query string, POST as a form body.
pub async fn call(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    params: &[(&str, &str)],
) -> Resp {
    let mut req = match method {
        "GET" => client.get(url).query(params),
        "POST" => client.post(url).form(params),
        other => client.request(other.parse().unwrap(), url),
    };
    if let Some(t) = token {
        req = req.header("m1-auth-token", t);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, text, json }
}

/// Asserts an error answer's shape: `{"message": .., "status": <status>}`.
pub fn assert_error(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.json["status"], status, "{r:?}");
    assert!(r.json["message"].as_str().is_some_and(|m| !m.is_empty()), "{r:?}");
}
