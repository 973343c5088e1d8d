//! IPv4 subnets for a run (pure).

use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network in CIDR notation with a prefix of at most /26 (room for 32 nodes, the
/// client namespace and the broadcast address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Subnet {
    /// A subnet from its network address and prefix length.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Self, String> {
        if prefix > 26 {
            return Err(format!(
                "prefix /{prefix} is too small a network; use /26 or shorter"
            ));
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        if u32::from(network) & !mask != 0 {
            return Err(format!("{network}/{prefix} has host bits set"));
        }
        Ok(Self { network, prefix })
    }

    /// The prefix length.
    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// The address of node `index` (1-based).
    pub fn node_address(self, index: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + index as u32)
    }

    /// The last usable address, given to the client namespace.
    pub fn client_address(self) -> Ipv4Addr {
        let size = 1u32 << (32 - u32::from(self.prefix));
        Ipv4Addr::from(u32::from(self.network) + size - 2)
    }

    /// Whether two subnets overlap.
    pub fn overlaps(self, other: Ipv4Subnet) -> bool {
        let prefix = self.prefix.min(other.prefix);
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        u32::from(self.network) & mask == u32::from(other.network) & mask
    }
}

impl FromStr for Ipv4Subnet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not in CIDR notation (like 10.231.0.0/24)"))?;
        let network = address
            .parse()
            .map_err(|_| format!("{address:?} is not an IPv4 address"))?;
        let prefix = prefix
            .parse()
            .map_err(|_| format!("{prefix:?} is not a prefix length"))?;
        Self::new(network, prefix)
    }
}

impl TryFrom<String> for Ipv4Subnet {
    type Error = String;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Ipv4Subnet> for String {
    fn from(subnet: Ipv4Subnet) -> String {
        subnet.to_string()
    }
}

impl std::fmt::Display for Ipv4Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The first `10.231.X.0/24` that overlaps none of `in_use`.
pub fn choose_free_subnet(in_use: &[Ipv4Subnet]) -> Option<Ipv4Subnet> {
    (0..=255u8)
        .map(|x| Ipv4Subnet::new(Ipv4Addr::new(10, 231, x, 0), 24).expect("valid /24"))
        .find(|candidate| in_use.iter().all(|used| !used.overlaps(*candidate)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cidr_and_rejects_small_or_malformed_networks() {
        let subnet: Ipv4Subnet = "10.9.0.0/24".parse().unwrap();
        assert_eq!(subnet.node_address(3), Ipv4Addr::new(10, 9, 0, 3));
        assert_eq!(subnet.client_address(), Ipv4Addr::new(10, 9, 0, 254));
        assert!("10.9.0.0/27".parse::<Ipv4Subnet>().is_err());
        assert!("10.9.0.1/24".parse::<Ipv4Subnet>().is_err());
        assert!("10.9.0.0".parse::<Ipv4Subnet>().is_err());
        let small: Ipv4Subnet = "10.9.0.64/26".parse().unwrap();
        assert_eq!(small.client_address(), Ipv4Addr::new(10, 9, 0, 126));
        assert!(small.node_address(32) < small.client_address());
    }

    #[test]
    fn free_subnet_skips_the_ones_in_use() {
        let used = ["10.231.0.0/24", "10.231.1.0/25"].map(|s| s.parse().unwrap());
        assert_eq!(
            choose_free_subnet(&used).unwrap().to_string(),
            "10.231.2.0/24"
        );
        let everything = ["10.231.0.0/16".parse().unwrap()];
        assert_eq!(choose_free_subnet(&everything), None);
    }
}
