//! Logs and traces: the `tracing` subscriber every command installs once, at start-up.
//!
//! Lines go to stderr, as text or (`--log-json`) one JSON object per line, each with the fields
//! of the spans it was logged in (`request`: method, route, request id; `run`: thread id; `node`;
//! `agent_call`: agent id, task id). Built with the cargo feature `otlp`, the same spans are also
//! exported over OTLP (HTTP, protobuf) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the spans' fields (`span`, `spans`).
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot install the log subscriber: {0}")]
    Install(#[from] TryInitError),
    #[cfg(feature = "otlp")]
    #[error("cannot build the OTLP exporter: {0}")]
    Otlp(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Keeps the trace export running; dropping it flushes the spans not yet sent.
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            // The subscriber may be gone by now: say it where it is always seen.
            eprintln!("OTLP export did not shut down cleanly: {e}");
        }
    }
}

/// Installs the process's subscriber: the filter from `BATON_LOG` (else `default_filter`), the
/// lines in `format` on stderr, and the OTLP export where built and configured.
pub fn init(format: LogFormat, default_filter: &str) -> Result<Telemetry, TelemetryError> {
    let filter =
        EnvFilter::try_from_env("BATON_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(lines);
    #[cfg(feature = "otlp")]
    {
        let (layer, provider) = match otlp::export()? {
            Some(export) => (Some(export.layer), Some(export.provider)),
            None => (None, None),
        };
        registry.with(layer).try_init()?;
        Ok(Telemetry { provider })
    }
    #[cfg(not(feature = "otlp"))]
    {
        registry.try_init()?;
        Ok(Telemetry {})
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::SpanExporter;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    /// The variable that turns the export on (and says where to), as every OpenTelemetry SDK
    /// reads it; the exporter also honours `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_EXPORTER_OTLP_TIMEOUT`.
    const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

    /// The span export: the layer that hands spans to the SDK, and the provider that sends
    /// them (kept to flush at exit).
    pub(super) struct Export<S> {
        pub layer: tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        pub provider: SdkTracerProvider,
    }

    /// Every span exported over OTLP/HTTP (protobuf), batched on the SDK's own thread; `None`
    /// when `OTEL_EXPORTER_OTLP_ENDPOINT` is not set.
    pub(super) fn export<S>() -> Result<Option<Export<S>>, opentelemetry_otlp::ExporterBuildError>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        if std::env::var_os(ENDPOINT).is_none_or(|v| v.is_empty()) {
            return Ok(None);
        }
        // The exporter's reqwest is the agents' one, built without a default crypto provider.
        crate::agents::http::install_crypto();
        let exporter = SpanExporter::builder().with_http().build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("baton").build())
            .build();
        let tracer = provider.tracer("baton");
        Ok(Some(Export {
            layer: tracing_opentelemetry::layer().with_tracer(tracer),
            provider,
        }))
    }
}
