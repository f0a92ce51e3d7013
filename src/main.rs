//! The `pipeline` command: parse arguments, set up logging, run one subcommand, print the
//! error chain once and exit with the code DESIGN §7 promises.

mod cli;
mod command;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's own exit codes are 0 for --help/--version and 2 for usage errors: ours too.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(cli.verbose, cli.log_format);
    // A panic is a bug; its message could quote a value the program held, so only where it
    // happened is printed (never the payload, which might hold a credential).
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "an unknown place".into());
        command::output::fail(format_args!(
            "internal error at {at} (a bug in pipeline; please report it with the command you \
             ran)"
        ));
    }));
    let result = match &cli.command {
        cli::Command::List(a) => command::list::run(&cli.root, a),
        cli::Command::Validate(a) => command::validate::run(&cli.root, a),
        cli::Command::Plan(a) => command::plan::run(&cli.root, a),
        cli::Command::Run(a) => command::run::run(&cli.root, a),
        cli::Command::Verify(a) => command::verify::run(&cli.root, a),
        cli::Command::Images(a) => command::images::run(&cli.root, a),
        cli::Command::Rollback(a) => command::rollback::run(&cli.root, a),
        cli::Command::Prune(a) => command::prune::run(&cli.root, a),
        cli::Command::Check(a) => command::check::run(&cli.root, a),
        cli::Command::Release(a) => command::release::run(&cli.root, a),
        cli::Command::Promote(a) => command::promote::run(&cli.root, a),
        cli::Command::BootCheck(a) => command::boot_check::run(&cli.root, a),
        cli::Command::Schema(a) => command::schema::run(a),
        cli::Command::Completions(a) => command::completions::run(&cli.root, a),
        cli::Command::Man(a) => command::man::run(a),
        cli::Command::Tag(a) => command::tag::run(&cli.root, a),
    };
    match result {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(err) => {
            command::output::fail(format_args!("{err:#}"));
            ExitCode::from(command::exit_code_of(&err).code())
        }
    }
}

fn init_logging(verbose: u8, format: cli::LogFormat) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // -v and -vv raise this tool's own output only: the HTTP and TLS crates underneath log
    // request details at trace level, and a token must never reach a CI log by accident.
    // RUST_LOG still overrides everything, for whoever debugs those crates.
    let default = format!("warn,hephaestus={level},pipeline={level}");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    match format {
        cli::LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .without_time()
            .init(),
        cli::LogFormat::Json => {
            // The command's own output travels as log events here, so no RUST_LOG may hide it.
            let output = format!("{}=info", command::output::TARGET)
                .parse()
                .expect("a valid filter directive");
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_env_filter(filter.add_directive(output))
                .with_writer(std::io::stderr)
                .init();
            command::output::use_json(true);
        }
    }
}
