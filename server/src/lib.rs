//! m1-server: the HTTP API (`m1 serve`) that speaks the seeds' endpoints.
//!
//! [`dispatch`] finds the target of a request (an environment by host or path prefix, or ops),
//! its endpoint in the library's table (`m1::endpoint`), checks the verb, the token and the
//! rights ([`auth`]), reads the parameters ([`params`]) and calls the library's handler on a
//! blocking thread (the engine's API is blocking), streaming its answer ([`stream`]). Users,
//! tokens and accounts are the server's own ([`users`], [`accounts`]). Errors answer
//! `{"message": .., "status": ..}` ([`error`]).

pub mod accounts;
pub mod auth;
pub mod dispatch;
pub mod error;
pub mod manage;
pub mod metrics;
pub mod params;
pub mod stream;
pub mod throttle;
pub mod upload;
pub mod users;

pub use accounts::init_owner;
pub use users::init_admin;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use dispatch::App;
pub use error::{Result, ServerError};

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on (default 127.0.0.1).
    pub bind: IpAddr,
    /// Port (0 picks a free one).
    pub port: u16,
    /// Serve this one environment (catalog name, path or URL) at the root.
    pub env: Option<String>,
    /// Catalog directory (default `$M1_HOME`, else `~/.m1`).
    pub home: Option<PathBuf>,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Longest wait for a request's headers or body (408 or closed connection after).
    pub read_timeout: Duration,
    /// Directories whose files `/publish` may read, besides each environment's stage
    /// (`-allowRead`); none by default.
    pub allow_read: Vec<PathBuf>,
    /// Where `env/create` may put environments (`-allowLocation`: directories or object-store
    /// URL prefixes); `$M1_HOME/envs` when empty.
    pub locations: Vec<String>,
    /// Whether anyone may sign up as an ops user (`-signup true`); off by default.
    pub signup: bool,
    /// Publishes (and `/write`s) running at once; more answer 503 (`-maxPublishes`).
    pub max_publishes: usize,
    /// How often usage is sampled into `$M1_HOME/usage/` (`-usageIntervalMs`).
    pub usage_interval: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            env: None,
            home: None,
            max_body_bytes: 64 << 20,
            read_timeout: Duration::from_secs(30),
            allow_read: Vec::new(),
            locations: Vec::new(),
            signup: false,
            max_publishes: 2,
            usage_interval: Duration::from_secs(300),
        }
    }
}

/// A server running in this process; dropping it stops accepting connections.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting and waits for the accept loop to end.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts the server on the current tokio runtime.
pub async fn start(options: ServeOptions) -> Result<Running> {
    let app = {
        let options = options.clone();
        tokio::task::spawn_blocking(move || App::new(options))
            .await
            .map_err(|e| ServerError::Internal(e.to_string()))??
    };
    let listener = tokio::net::TcpListener::bind((options.bind, options.port))
        .await
        .map_err(|e| ServerError::Internal(format!("cannot listen on {}:{}: {e}", options.bind, options.port)))?;
    let addr = listener.local_addr().map_err(|e| ServerError::Internal(e.to_string()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let _ = app.addr.set(addr);
    let app = Arc::new(app);
    dispatch::App::start_schedules(&app);
    let task = tokio::spawn(dispatch::accept_loop(listener, app, options.read_timeout, stopped));
    Ok(Running { addr, stop: Some(stop), task: Some(task) })
}

/// Runs the server until the process ends (`m1 serve`), printing where it listens.
pub fn serve(options: ServeOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("m1-serve")
        .build()
        .map_err(|e| ServerError::Internal(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async {
        let running = start(options.clone()).await?;
        let target = match &options.env {
            Some(e) => format!("environment '{e}' at the root, "),
            None => String::new(),
        };
        eprintln!(
            "m1 serve: listening on http://{} ({target}environments at http://<env>.localhost:{port}/ or /<env>/, ops at http://ops.localhost:{port}/ or /ops/)",
            running.addr,
            port = running.addr.port()
        );
        let _ = tokio::signal::ctrl_c().await;
        running.stop().await;
        Ok(())
    })
}
