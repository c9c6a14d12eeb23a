//! Membership on the command line: the `run` flags for what a node announces (`MemberArgs`), and the client commands
//! `members`, `services`, `route` and `service register|deregister|pass|warn|fail`, each one request to a running
//! node's API, printed as a table or, with `--json`, as the API's JSON.

use std::time::Duration;

use clap::{Args, Subcommand, builder::BoolishValueParser};
use reqwest::Method;

use super::{
    ClientArgs,
    client::{Answer, ApiClient, path_segment, print, table},
};
use crate::{
    api::cluster::ServiceChange,
    config::{
        self,
        members::{MembersConfig, parse_tag},
        services::ServiceDefinition,
    },
    node::{MemberInfo, RouteAnswer, ServiceInstance},
};

/// What this node announces about itself, and how records age (`run`).
#[derive(Debug, Clone, Args)]
pub struct MemberArgs {
    /// The name other nodes show for this one [default: the host name].
    #[arg(long, env = "SWARMNODE_NAME")]
    pub name: Option<String>,
    /// A tag key=value in this node's member record (repeatable), for `members --tag` and `route --tag`.
    #[arg(long = "tag", env = "SWARMNODE_TAG", value_delimiter = ',', value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
    /// A service this node offers (repeatable): NAME=PORT[,tag=T][,check=http://127.0.0.1:PORT/PATH |
    /// check=tcp://127.0.0.1:PORT | check=ttl:30s][,interval=10s][,timeout=2s][,id=ID][,deregister_after=1m].
    #[arg(long = "service", env = "SWARMNODE_SERVICE", value_delimiter = ';')]
    pub services: Vec<ServiceDefinition>,
    /// This node's share of routed keys relative to the others' (0 takes none).
    #[arg(long, env = "SWARMNODE_WEIGHT", default_value_t = 1.0)]
    pub weight: f64,
    /// Scale the advertised weight by spare CPU (1 - load, at least 0.05), so a busy node gets fewer keys
    /// (variable: 1/0, true/false, yes/no, on/off).
    #[arg(long, env = "SWARMNODE_DYNAMIC_WEIGHT", value_parser = BoolishValueParser::new())]
    pub dynamic_weight: bool,
    /// How often this node re-announces its member record [default: --heartbeat].
    #[arg(long, env = "SWARMNODE_MEMBER_INTERVAL", value_parser = config::parse_duration)]
    pub member_interval: Option<Duration>,
    /// How long a member stays alive without a renewal before it is suspect (failed after three times as long)
    /// [default: 3 member intervals].
    #[arg(long, env = "SWARMNODE_MEMBER_TTL", value_parser = config::parse_duration)]
    pub member_ttl: Option<Duration>,
    /// How long failed and left members stay listed.
    #[arg(long, env = "SWARMNODE_REAP_AFTER", default_value = "1h", value_parser = config::parse_duration)]
    pub reap_after: Duration,
}

impl MemberArgs {
    pub fn to_config(&self) -> MembersConfig {
        let defaults = MembersConfig::default();
        MembersConfig {
            name: self.name.clone().unwrap_or(defaults.name),
            tags: self.tags.iter().cloned().collect(),
            services: self.services.clone(),
            weight: self.weight,
            dynamic_weight: self.dynamic_weight,
            interval: self.member_interval,
            ttl: self.member_ttl,
            reap_after: self.reap_after,
        }
    }
}

/// The membership client commands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// List the swarm's members as the running node sees them.
    Members {
        #[command(flatten)]
        client: ClientArgs,
        /// Only members in this status: alive, suspect, failed or left.
        #[arg(long)]
        status: Option<String>,
        /// Only members with this tag, key=value.
        #[arg(long)]
        tag: Option<String>,
    },
    /// List every service instance in the swarm with its health.
    Services {
        #[command(flatten)]
        client: ClientArgs,
        /// Only instances of this service.
        #[arg(long)]
        name: Option<String>,
        /// Only instances in this health: passing, warning or critical.
        #[arg(long)]
        status: Option<String>,
    },
    /// Which members own a key, best first (weighted rendezvous hashing over alive members).
    Route {
        #[command(flatten)]
        client: ClientArgs,
        key: String,
        /// How many owners.
        #[arg(long, default_value_t = 1)]
        n: usize,
        /// Only members with a passing instance of this service.
        #[arg(long)]
        service: Option<String>,
        /// Only members with this tag, key=value.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Register, deregister or report the health of this node's services.
    Service {
        #[command(subcommand)]
        command: ServiceCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Register (or replace) a service: the same NAME=PORT[,…] form as `run --service`; kept across restarts.
    Register {
        #[command(flatten)]
        client: ClientArgs,
        definition: ServiceDefinition,
    },
    /// Remove a service.
    Deregister {
        #[command(flatten)]
        client: ClientArgs,
        id: String,
    },
    /// Report a TTL-checked service passing (and restart its TTL).
    Pass(TtlArgs),
    /// Report a TTL-checked service warning.
    Warn(TtlArgs),
    /// Report a TTL-checked service failing.
    Fail(TtlArgs),
}

#[derive(Debug, Args)]
pub struct TtlArgs {
    #[command(flatten)]
    client: ClientArgs,
    id: String,
    /// Shown as the check's output.
    #[arg(long)]
    note: Option<String>,
}

pub async fn run(command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Members { client, status, tag } => {
            let query = query(&[("status", status), ("tag", tag)]);
            let answer: Answer<Vec<MemberInfo>> = ApiClient::new(&client)?.get(&format!("/v1/members{query}")).await?;
            print(&client, &answer, |members| members_table(members))
        }
        ClusterCommand::Services { client, name, status } => {
            let query = query(&[("name", name), ("status", status)]);
            let answer: Answer<Vec<ServiceInstance>> =
                ApiClient::new(&client)?.get(&format!("/v1/services{query}")).await?;
            print(&client, &answer, |services| services_table(services))
        }
        ClusterCommand::Route {
            client,
            key,
            n,
            service,
            tag,
        } => {
            let query = query(&[("n", Some(n.to_string())), ("service", service), ("tag", tag)]);
            let path = format!("/v1/route/{}{query}", path_segment(&key));
            let answer: Answer<RouteAnswer> = ApiClient::new(&client)?.get(&path).await?;
            print(&client, &answer, route_table)
        }
        ClusterCommand::Service { command } => service(command).await,
    }
}

async fn service(command: ServiceCommand) -> anyhow::Result<()> {
    let (client, request): (ClientArgs, _) = match command {
        ServiceCommand::Register { client, definition } => {
            let api = ApiClient::new(&client)?;
            let path = format!("/v1/services/{}", path_segment(&definition.id));
            let request = api.request(Method::PUT, &path).json(&definition.to_body());
            (client, (api, request))
        }
        ServiceCommand::Deregister { client, id } => {
            let api = ApiClient::new(&client)?;
            let request = api.request(Method::DELETE, &format!("/v1/services/{}", path_segment(&id)));
            (client, (api, request))
        }
        ServiceCommand::Pass(args) => ttl(args, "pass")?,
        ServiceCommand::Warn(args) => ttl(args, "warn")?,
        ServiceCommand::Fail(args) => ttl(args, "fail")?,
    };
    let (api, request) = request;
    let answer: Answer<ServiceChange> = api.call(request).await?;
    print(&client, &answer, |change| format!("{}: {}\n", change.id, change.result))
}

fn ttl(args: TtlArgs, check: &str) -> anyhow::Result<(ClientArgs, (ApiClient, reqwest::RequestBuilder))> {
    let api = ApiClient::new(&args.client)?;
    let path = format!(
        "/v1/services/{}/{check}{}",
        path_segment(&args.id),
        query(&[("note", args.note)])
    );
    let request = api.request(Method::PUT, &path);
    Ok((args.client, (api, request)))
}

/// `?k=v&…` of the values given, percent-encoded; empty when none is.
fn query(pairs: &[(&str, Option<String>)]) -> String {
    let given: Vec<String> = pairs
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|value| format!("{key}={}", path_segment(value))))
        .collect();
    if given.is_empty() {
        String::new()
    } else {
        format!("?{}", given.join("&"))
    }
}

fn members_table(members: &[MemberInfo]) -> String {
    let rows: Vec<[String; 7]> = members
        .iter()
        .map(|m| {
            [
                if m.local {
                    format!("{} (this node)", m.name)
                } else {
                    m.name.clone()
                },
                m.status.to_string() + if m.flapping { " (flapping)" } else { "" },
                m.peer.to_string(),
                format!("{:.2}", m.weight),
                format!("{:.0}%", m.cpu * 100.0),
                m.services
                    .iter()
                    .map(|s| format!("{}:{}", s.name, s.status))
                    .collect::<Vec<_>>()
                    .join(" "),
                m.tags
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    table(&["NAME", "STATUS", "PEER", "WEIGHT", "CPU", "SERVICES", "TAGS"], &rows)
}

fn services_table(services: &[ServiceInstance]) -> String {
    let rows: Vec<[String; 6]> = services
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                s.status.to_string(),
                s.member.clone(),
                format!("{}:{}", s.address.as_deref().unwrap_or("-"), s.port),
                s.id.clone(),
                s.output.clone(),
            ]
        })
        .collect();
    table(&["SERVICE", "STATUS", "MEMBER", "ADDRESS", "ID", "OUTPUT"], &rows)
}

fn route_table(answer: &RouteAnswer) -> String {
    let rows: Vec<[String; 4]> = answer
        .owners
        .iter()
        .enumerate()
        .map(|(i, owner)| {
            let address = match (&owner.address, owner.port) {
                (Some(host), Some(port)) => format!("{host}:{port}"),
                (Some(host), None) => host.clone(),
                (None, _) => "-".to_owned(),
            };
            [(i + 1).to_string(), owner.name.clone(), owner.peer.to_string(), address]
        })
        .collect();
    if rows.is_empty() {
        return format!(
            "no alive member can own {:?} ({} candidates)\n",
            answer.key, answer.candidates
        );
    }
    table(&["#", "NAME", "PEER", "ADDRESS"], &rows)
}
