# sunraku: the Netbird VPN server (management, signal, dashboard, TURN/STUN relay) that
# secures network access to the estate. The one legacy-BIOS image, by the exception granted
# in profiles/policy.yaml.
#
# Built on nixpkgs' services.netbird.server modules. Relaying uses their coturn integration
# (services.netbird.server.coturn), present in every release since 24.05; newer nixpkgs also
# has a native netbird-relay module, to be preferred once the pinned release is confirmed to
# ship it.
#
# Secrets are never in the image (it is readable by the whole project): the services below
# start only once their files exist under /var/lib/hephaestus/netbird, written at boot from
# the instance's user-data (cloud-init write_files) or by an operator.
{ config, lib, ... }:
let
  cfg = config.hephaestus.netbird;
  # RFC 2606 reserves `.example`: a value on it is a placeholder, never a real endpoint.
  isPlaceholder = value: builtins.match ".*[.]example(:[0-9]+)?(/.*)?" value != null;
  placeholder = option: value: {
    assertion = !isPlaceholder value;
    message = "sunraku: ${option} is still the placeholder `${value}`: set ${option} to the "
      + "real value before building the image (nix/README.md, \"What the first online build "
      + "must confirm\").";
  };
  secretDir = "/var/lib/hephaestus/netbird";
  secrets = {
    datastoreKey = "${secretDir}/datastore-encryption-key";
    turnSecret = "${secretDir}/turn-secret";
    coturnPassword = "${secretDir}/coturn-password";
  };
in
{
  options.hephaestus.netbird = {
    domain = lib.mkOption {
      type = lib.types.str;
      description = ''
        Public DNS name of the VPN endpoint. Baked into the dashboard and the management
        configuration, so it is part of the image.
      '';
    };

    oidcIssuer = lib.mkOption {
      type = lib.types.str;
      example = "https://auth.example.org/realms/estate";
      description = ''
        OpenID Connect issuer that authenticates VPN users (Netbird needs one; the dashboard is
        built against it).
      '';
    };

    acmeEmail = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = ''
        Contact address for Let's Encrypt. When set, nginx serves the domain over TLS with an
        ACME certificate, which Netbird clients need; when null the image still boots but
        serves plain HTTP only, and evaluation warns.
      '';
    };
  };

  config = {
    hephaestus.profile = "sunraku";
    hephaestus.boot = "bios";

    # Placeholders until the platform names them: an image cannot be built with them, the
    # assertions below fail evaluation naming the option to set (nix/README.md, "What the
    # first online build must confirm").
    hephaestus.netbird.domain = lib.mkDefault "vpn.hephaestus.example";
    hephaestus.netbird.oidcIssuer = lib.mkDefault "https://auth.hephaestus.example";
    assertions = [
      (placeholder "hephaestus.netbird.domain" cfg.domain)
      (placeholder "hephaestus.netbird.oidcIssuer" cfg.oidcIssuer)
    ];

    services.netbird.server = {
      enable = true;
      inherit (cfg) domain;
      # One nginx virtual host fronts the dashboard, the management API and gRPC, and the
      # signal gRPC service; their own ports (8011, 8012) stay on localhost.
      enableNginx = true;

      management = {
        oidcConfigEndpoint = "${cfg.oidcIssuer}/.well-known/openid-configuration";
        settings = {
          DataStoreEncryptionKey._secret = secrets.datastoreKey;
          TURNConfig.Secret._secret = secrets.turnSecret;
        };
      };

      dashboard.settings.AUTH_AUTHORITY = cfg.oidcIssuer;

      coturn = {
        enable = true;
        passwordFile = secrets.coturnPassword;
      };
    };

    # Skipped, not failed, until the secrets are provisioned.
    systemd.services.netbird-management = {
      after = [ "cloud-init.service" ];
      unitConfig.ConditionPathExists = [ secrets.datastoreKey secrets.turnSecret secrets.coturnPassword ];
    };
    systemd.services.coturn = {
      after = [ "cloud-init.service" ];
      unitConfig.ConditionPathExists = [ secrets.coturnPassword ];
    };

    services.nginx = {
      recommendedProxySettings = true;
      recommendedTlsSettings = true;
      virtualHosts.${cfg.domain} = lib.mkIf (cfg.acmeEmail != null) {
        forceSSL = true;
        enableACME = true;
      };
    };
    security.acme = lib.mkIf (cfg.acmeEmail != null) {
      acceptTerms = true;
      defaults.email = cfg.acmeEmail;
    };
    warnings = lib.optional (cfg.acmeEmail == null)
      "sunraku: hephaestus.netbird.acmeEmail is unset, so nginx serves ${cfg.domain} without TLS; Netbird clients will not connect.";

    networking.firewall = {
      # 80: ACME challenges and the redirect to HTTPS; 443: dashboard, management, signal.
      # The coturn module opens its own ports: 3478/3479 and 5349/5350 (TCP and UDP) and the
      # UDP relay range (services.coturn.min-port..max-port).
      allowedTCPPorts = [ 80 443 ];
    };
  };
}
