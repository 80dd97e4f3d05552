use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use monitor::{
    daemon::{self, Overrides, RunOptions},
    ops::config::Config,
    python::interpreter::{self, Verdict},
};

/// premain: catches Python code touching secrets, the network or other programs before the
/// application's main code runs.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log filter for stderr (tracing EnvFilter syntax); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch every Python process on this machine (needs root).
    Run {
        /// Configuration file (TOML); see deploy/premain.toml. SIGHUP re-reads it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print each record of a tracked process as one JSON line on stdout.
        #[arg(long)]
        events: bool,
        /// Kernel ring buffer size in bytes (power of two) [config: limits.ring_buffer_size,
        /// default 8388608].
        #[arg(long)]
        ring_buffer_size: Option<u32>,
        /// Tracked processes remembered at most [config: limits.max_processes, default 65536].
        #[arg(long)]
        max_processes: Option<usize>,
        /// Repeats of an alert (same process, rule and target) within this many seconds are
        /// folded into it; its final count is printed when the window closes [config:
        /// alerts.fold_window_secs, default 30].
        #[arg(long)]
        fold_window_secs: Option<u64>,
        /// Where /metrics, /healthz and /readyz listen; empty turns them off [config:
        /// metrics.address, default 127.0.0.1:9464].
        #[arg(long, value_name = "IP:PORT")]
        metrics_address: Option<String>,
        /// Every rule's mode: observe (alert only), dry-run (alert what enforce would deny)
        /// or enforce (deny it); the configuration's enforcement section refines it per rule
        /// and per scope [config: enforcement.mode, default observe].
        #[arg(long, value_name = "MODE", value_parser = monitor::enforce::Mode::parse)]
        mode: Option<monitor::enforce::Mode>,
        /// What outlives a run (verdicts on executables) [config: limits.state_dir, default
        /// /var/lib/premain].
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// The lock that keeps a second premain from starting on the same node.
        #[arg(long, value_name = "PATH", default_value = monitor::ops::instance::DEFAULT_LOCK)]
        lock_file: PathBuf,
        /// Testing aid: after attaching, wait this many milliseconds before reading records.
        #[arg(long, hide = true)]
        debug_stall_reader_ms: Option<u64>,
        /// Testing aid: take this many milliseconds before deciding each watched open.
        #[arg(long, hide = true)]
        debug_stall_decisions_ms: Option<u64>,
    },
    /// Validate a configuration file without loading anything; exit 0 only when it is valid.
    CheckConfig {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print the configuration premain would run with (the file's values and every
        /// default) as TOML, instead of "valid".
        #[arg(long)]
        print: bool,
    },
    /// Put packages through install, start-up and import in a sandbox, watched by premain,
    /// and report what they did before any application code ran (needs root). Exit 0 clean,
    /// 1 findings, 2 error.
    Vet {
        /// Package specs (resolved from --find-links, and the index with --index-url), wheel or
        /// sdist files, project directories.
        #[arg(value_name = "INPUT")]
        inputs: Vec<String>,
        /// A requirements file (repeatable).
        #[arg(short = 'r', long = "requirement", value_name = "FILE")]
        requirements: Vec<PathBuf>,
        /// The CPython to vet with (a path or a name on PATH) [default: python3].
        #[arg(long, value_name = "PYTHON")]
        python: Option<PathBuf>,
        /// pip or uv.
        #[arg(long, default_value = "pip", value_parser = monitor::vet::run::Installer::parse)]
        installer: monitor::vet::run::Installer,
        /// uv's executable for --installer uv [default: uv on PATH].
        #[arg(long, value_name = "PATH")]
        uv: Option<PathBuf>,
        /// A directory of wheels and sdists to install from (repeatable).
        #[arg(long, value_name = "DIR")]
        find_links: Vec<PathBuf>,
        #[command(flatten)]
        index: Box<IndexArgs>,
        /// Also run each console script with --help.
        #[arg(long)]
        scripts: bool,
        /// Seconds the install may take.
        #[arg(long, default_value_t = 900)]
        install_timeout: u64,
        /// Seconds each start-up, import or script step may take.
        #[arg(long, default_value_t = 60)]
        step_timeout: u64,
        /// Seconds what a step leaves running (a detached child) may go on after it.
        #[arg(long, default_value_t = 5)]
        linger: u64,
        /// A variable for every step, NAME=VALUE (repeatable).
        #[arg(long, value_name = "NAME=VALUE", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// premain's configuration (rules, allowlists) for the run.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Keep the run's directory (venv, bait HOME, step logs) and print where it is.
        #[arg(long)]
        keep: bool,
        /// table, json or sarif [default: table on a terminal, json otherwise].
        #[arg(long, value_name = "FORMAT")]
        format: Option<monitor::vet::report::Format>,
        /// Write the report to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Also write the report as SARIF to FILE, whatever --format: one run gives the JSON
        /// report a later --baseline reads and the SARIF code scanning takes.
        #[arg(long, value_name = "FILE")]
        sarif: Option<PathBuf>,
        /// An earlier JSON report: report only what is new against it.
        #[arg(long, value_name = "REPORT")]
        baseline: Option<PathBuf>,
        /// The verdict's policy (TOML): what fails, levels, rules allowed per distribution.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Also write everything the sink received (each flow's bytes, each DNS question) as
        /// JSON to FILE, for a reviewer to read what was sent. It holds the run's bait values.
        #[arg(long, value_name = "FILE")]
        capture: Option<PathBuf>,
    },
    /// Tell whether executables run CPython, and where its symbols are (JSON per line).
    Interpreter {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// `premain vet`'s package index options (boxed: they would make every command's value large).
#[derive(clap::Args)]
struct IndexArgs {
    /// Install from files only (--find-links, inputs): the default.
    #[arg(long)]
    no_index: bool,
    /// A package index (http or https, PEP 503), given to pip or uv unchanged: the sandbox
    /// reaches this host and port, relayed by vet, and nothing else.
    #[arg(long, value_name = "URL")]
    index_url: Option<String>,
    /// Another index, relayed as --index-url's is (repeatable).
    #[arg(long, value_name = "URL")]
    extra_index_url: Vec<String>,
    /// A host the indexes' pages link files on, relayed as the index is (repeatable; port
    /// 443 when absent): PyPI's files are on files.pythonhosted.org.
    #[arg(long, value_name = "HOST[:PORT]")]
    index_host: Vec<String>,
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    let result = match cli.command {
        Command::Run {
            config,
            events,
            ring_buffer_size,
            max_processes,
            fold_window_secs,
            metrics_address,
            mode,
            state_dir,
            lock_file,
            debug_stall_reader_ms,
            debug_stall_decisions_ms,
        } => {
            let opts = RunOptions {
                config,
                overrides: Overrides {
                    ring_buffer_size,
                    max_processes,
                    fold_window_secs,
                    metrics_address,
                    mode,
                    state_dir,
                },
                events,
                stall_reader: debug_stall_reader_ms.map(Duration::from_millis),
                stall_decisions: debug_stall_decisions_ms.map(Duration::from_millis),
                lock_file,
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime {
                Ok(rt) => {
                    let result = rt.block_on(daemon::run(opts)).map_err(|e| e.to_string());
                    // The sinks have had their drain deadline; a write stuck in a blocking task
                    // (a full pipe) must not keep the process from exiting.
                    rt.shutdown_timeout(Duration::from_secs(1));
                    result
                }
                Err(e) => Err(format!("cannot start the async runtime: {e}")),
            }
        }
        Command::Vet {
            inputs,
            requirements,
            python,
            installer,
            uv,
            find_links,
            index,
            scripts,
            install_timeout,
            step_timeout,
            linger,
            env,
            config,
            keep,
            format,
            output,
            sarif,
            baseline,
            policy,
            capture,
        } => {
            let index = match monitor::vet::index::IndexOptions::from_args(
                index.no_index,
                index.index_url.as_deref(),
                &index.extra_index_url,
                &index.index_host,
            ) {
                Ok(index) => index,
                Err(e) => {
                    eprintln!("premain vet: error: {e}");
                    return ExitCode::from(2);
                }
            };
            let report_options = ReportOptions { format, output, sarif, baseline, policy };
            let prepared = match report_options.prepare() {
                Ok(prepared) => prepared,
                Err(e) => {
                    eprintln!("premain vet: error: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = monitor::vet::run::VetOptions {
                inputs,
                requirements,
                python,
                installer,
                uv,
                find_links,
                index,
                scripts,
                install_timeout: Duration::from_secs(install_timeout),
                step_timeout: Duration::from_secs(step_timeout),
                linger: Duration::from_secs(linger),
                env,
                config,
                keep,
            };
            return match monitor::vet::run::run(&opts) {
                Ok(facts) => {
                    if keep {
                        eprintln!("premain vet: the run's directory is kept: {}", facts.workdir.display());
                    }
                    if let Some(path) = &capture {
                        let written = serde_json::to_vec(&facts.capture)
                            .map_err(|e| e.to_string())
                            .and_then(|bytes| std::fs::write(path, bytes).map_err(|e| e.to_string()));
                        if let Err(e) = written {
                            eprintln!("premain vet: error: --capture {}: {e}", path.display());
                            return ExitCode::from(2);
                        }
                    }
                    let report = prepared.report(&facts);
                    if let Err(e) = prepared.write(&report) {
                        eprintln!("premain vet: error: {e}");
                        return ExitCode::from(2);
                    }
                    if report.exit_code() != 0 {
                        ExitCode::from(1)
                    } else if let Some(why) = &facts.install_failed {
                        eprintln!("premain vet: error: {why}");
                        ExitCode::from(2)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("premain vet: error: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Command::CheckConfig { file, print } => check_config(&file, print),
        Command::Interpreter { paths } => inspect(&paths),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("premain: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What `premain vet` does with what it saw.
struct ReportOptions {
    format: Option<monitor::vet::report::Format>,
    output: Option<PathBuf>,
    sarif: Option<PathBuf>,
    baseline: Option<PathBuf>,
    policy: Option<PathBuf>,
}

/// [`ReportOptions`] read and checked before anything runs: a bad policy or baseline stops
/// vet before it installs anything.
struct PreparedReport {
    format: monitor::vet::report::Format,
    colour: bool,
    output: Option<PathBuf>,
    sarif: Option<PathBuf>,
    baseline: Option<(monitor::vet::report::Report, String)>,
    policy: monitor::vet::report::Policy,
}

impl ReportOptions {
    fn prepare(self) -> Result<PreparedReport, String> {
        use monitor::vet::report::{Format, Policy, Report};
        use std::io::IsTerminal as _;
        let policy = match &self.policy {
            Some(path) => Policy::load(path).map_err(|e| e.to_string())?,
            None => Policy::default(),
        };
        let baseline = match &self.baseline {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--baseline {}: {e}", path.display()))?;
                let report =
                    Report::from_json(&text).map_err(|e| format!("--baseline {}: {e}", path.display()))?;
                Some((report, path.display().to_string()))
            }
            None => None,
        };
        let terminal = self.output.is_none() && std::io::stdout().is_terminal();
        let format = self.format.unwrap_or(if terminal { Format::Table } else { Format::Json });
        Ok(PreparedReport {
            format,
            colour: terminal,
            output: self.output,
            sarif: self.sarif,
            baseline,
            policy,
        })
    }
}

impl PreparedReport {
    fn report(&self, facts: &monitor::vet::run::Facts) -> monitor::vet::report::Report {
        let report = monitor::vet::report::Report::build(&facts.report_input(), &self.policy);
        match &self.baseline {
            Some((baseline, file)) => report.new_against(baseline, Some(file)),
            None => report,
        }
    }

    fn write(&self, report: &monitor::vet::report::Report) -> Result<(), String> {
        let render = |format, colour| {
            let mut text = report.render(format, colour);
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text
        };
        let text = render(self.format, self.colour);
        match &self.output {
            Some(path) => {
                std::fs::write(path, text).map_err(|e| format!("--output {}: {e}", path.display()))?
            }
            None => print!("{text}"),
        }
        match &self.sarif {
            Some(path) => std::fs::write(path, render(monitor::vet::report::Format::Sarif, false))
                .map_err(|e| format!("--sarif {}: {e}", path.display())),
            None => Ok(()),
        }
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

fn check_config(file: &std::path::Path, print: bool) -> Result<(), String> {
    let config = Config::load(file).map_err(|e| e.to_string())?;
    monitor::detect::Rules::from_config(&config).map_err(|e| format!("{}: {e}", file.display()))?;
    if print {
        let text = config.effective_toml().map_err(|e| format!("{}: cannot print: {e}", file.display()))?;
        print!("{text}");
    } else {
        println!("{}: valid", file.display());
    }
    Ok(())
}

fn inspect(paths: &[PathBuf]) -> Result<(), String> {
    for path in paths {
        let verdict = interpreter::recognize(path, std::path::Path::new("/")).map_err(|e| e.to_string())?;
        let line = match verdict {
            Verdict::NotPython => serde_json::json!({"path": path, "python": false}),
            Verdict::Python(i) => serde_json::json!({
                "path": path, "python": true, "image": i.image,
                "version": i.version.map(|(a, b)| format!("{a}.{b}")),
                "free_threaded": i.free_threaded, "symbols": i.symbols,
            }),
        };
        println!("{line}");
    }
    Ok(())
}
