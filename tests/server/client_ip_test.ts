import assert from "node:assert/strict";
import { ClientIpResolver, normalizeIp, parseIp } from "../../src/server/client_ip.ts";

Deno.test("parseIp() reads IPv4 dotted quads", () => {
  assert.deepEqual(parseIp("127.0.0.1"), { v6: false, value: 0x7f000001n });
  assert.deepEqual(parseIp("255.255.255.255"), { v6: false, value: 0xffffffffn });
  assert.deepEqual(parseIp(" 10.0.0.1 "), { v6: false, value: 0x0a000001n });
});

Deno.test("parseIp() rejects malformed IPv4", () => {
  for (
    const bad of [
      "1.2.3",
      "1.2.3.4.5",
      "256.0.0.1",
      "1.2.3.-4",
      "1.2.3.a",
      "",
      "1..2.3",
      "1234.1.1.1",
    ]
  ) {
    assert.equal(parseIp(bad), undefined, bad);
  }
});

Deno.test("parseIp() reads IPv6 with and without ::, brackets and zones", () => {
  assert.deepEqual(parseIp("::1"), { v6: true, value: 1n });
  assert.deepEqual(parseIp("::"), { v6: true, value: 0n });
  assert.deepEqual(parseIp("[::1]"), { v6: true, value: 1n });
  assert.deepEqual(parseIp("fe80::1%eth0"), { v6: true, value: (0xfe80n << 112n) | 1n });
  assert.deepEqual(
    parseIp("2001:db8:0:0:0:0:0:1"),
    parseIp("2001:DB8::1"),
  );
  assert.deepEqual(parseIp("1:2:3:4:5:6:7:8"), {
    v6: true,
    value: 0x0001_0002_0003_0004_0005_0006_0007_0008n,
  });
  assert.deepEqual(parseIp("1::"), { v6: true, value: 1n << 112n });
});

Deno.test("parseIp() rejects malformed IPv6", () => {
  for (
    const bad of [
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "1:2:3:4::5:6:7:8",
      "12345::1",
      "g::1",
      ":::",
    ]
  ) {
    assert.equal(parseIp(bad), undefined, bad);
  }
});

Deno.test("parseIp() treats IPv4-mapped IPv6 as IPv4", () => {
  assert.deepEqual(parseIp("::ffff:192.168.1.7"), parseIp("192.168.1.7"));
  assert.deepEqual(parseIp("::FFFF:10.0.0.1"), { v6: false, value: 0x0a000001n });
});

Deno.test("ClientIpResolver rejects invalid CIDRs", () => {
  assert.throws(() => new ClientIpResolver(["10.0.0.0/33"]), /invalid CIDR prefix/);
  assert.throws(() => new ClientIpResolver(["::/129"]), /invalid CIDR prefix/);
  assert.throws(() => new ClientIpResolver(["10.0.0/8"]), /invalid CIDR/);
  assert.throws(() => new ClientIpResolver(["10.0.0.0/x"]), /invalid CIDR prefix/);
});

Deno.test("ClientIpResolver.isTrusted() matches IPv4 CIDRs, bare addresses and /0", () => {
  const resolver = new ClientIpResolver(["10.0.0.0/8", "192.168.1.7", "172.16.0.0/12"]);
  assert.equal(resolver.isTrusted("10.255.1.2"), true);
  assert.equal(resolver.isTrusted("11.0.0.1"), false);
  assert.equal(resolver.isTrusted("192.168.1.7"), true);
  assert.equal(resolver.isTrusted("192.168.1.8"), false);
  assert.equal(resolver.isTrusted("172.31.255.255"), true);
  assert.equal(resolver.isTrusted("172.32.0.0"), false);
  assert.equal(resolver.isTrusted("::ffff:10.1.1.1"), true, "mapped peer");
  assert.equal(resolver.isTrusted("not-an-ip"), false);
  assert.equal(resolver.isTrusted("::a00:1"), false, "IPv6 never matches an IPv4 range");

  const everyone = new ClientIpResolver(["0.0.0.0/0"]);
  assert.equal(everyone.isTrusted("1.2.3.4"), true);
  assert.equal(everyone.isTrusted("255.255.255.255"), true);
  assert.equal(everyone.isTrusted("::1"), false);
});

Deno.test("ClientIpResolver.isTrusted() matches IPv6 CIDRs incl. /128 and /0", () => {
  const resolver = new ClientIpResolver(["::1/128", "fd00::/8"]);
  assert.equal(resolver.isTrusted("::1"), true);
  assert.equal(resolver.isTrusted("::2"), false);
  assert.equal(resolver.isTrusted("fd12:3456::1"), true);
  assert.equal(resolver.isTrusted("fe00::1"), false);
  assert.equal(resolver.isTrusted("127.0.0.1"), false);
  const all = new ClientIpResolver(["::/0"]);
  assert.equal(all.isTrusted("2001:db8::1"), true);
  assert.equal(all.isTrusted("10.0.0.1"), false);
  assert.equal(new ClientIpResolver([]).isTrusted("127.0.0.1"), false);
});

Deno.test("ClientIpResolver.resolve() ignores X-Forwarded-For from an untrusted peer", () => {
  const resolver = new ClientIpResolver(["10.0.0.0/8"]);
  assert.equal(resolver.resolve("203.0.113.9", "1.1.1.1"), "203.0.113.9");
  assert.equal(new ClientIpResolver([]).resolve("127.0.0.1", "1.1.1.1"), "127.0.0.1");
});

Deno.test("ClientIpResolver.resolve() uses the socket peer when there is no header", () => {
  const resolver = new ClientIpResolver(["10.0.0.0/8"]);
  assert.equal(resolver.resolve("10.0.0.1", null), "10.0.0.1");
  assert.equal(resolver.resolve("10.0.0.1", ""), "10.0.0.1");
});

Deno.test("ClientIpResolver.resolve() walks X-Forwarded-For from the right past trusted hops", () => {
  const resolver = new ClientIpResolver(["10.0.0.0/8"]);
  assert.equal(resolver.resolve("10.0.0.1", "198.51.100.7"), "198.51.100.7");
  // The client may prepend anything; only the hop our trusted proxies saw counts.
  assert.equal(
    resolver.resolve("10.0.0.1", "6.6.6.6, 198.51.100.7, 10.0.0.3, 10.0.0.2"),
    "198.51.100.7",
  );
  assert.equal(resolver.resolve("10.0.0.1", " 2001:db8::5 ,10.9.9.9"), "2001:db8::5");
  // Every hop trusted: the leftmost is the best we know.
  assert.equal(resolver.resolve("10.0.0.1", "10.0.0.9, 10.0.0.8"), "10.0.0.9");
});

Deno.test("ClientIpResolver.resolve() falls back to the peer on garbage in the chain", () => {
  const resolver = new ClientIpResolver(["10.0.0.0/8"]);
  assert.equal(resolver.resolve("10.0.0.1", "198.51.100.7, nonsense"), "10.0.0.1");
  assert.equal(resolver.resolve("10.0.0.1", "198.51.100.7,,10.0.0.2"), "10.0.0.1");
  assert.equal(resolver.resolve("10.0.0.1", "unknown"), "10.0.0.1");
  // Garbage to the left of the first untrusted hop is never looked at.
  assert.equal(resolver.resolve("10.0.0.1", "nonsense, 198.51.100.7"), "198.51.100.7");
});

Deno.test("ClientIpResolver.resolve() trusts an IPv4-mapped loopback peer", () => {
  const resolver = new ClientIpResolver(["127.0.0.1/32"]);
  assert.equal(resolver.resolve("::ffff:127.0.0.1", "198.51.100.7"), "198.51.100.7");
});

Deno.test("normalizeIp() drops ports, unmaps IPv4-mapped IPv6 and refuses leading zeros", () => {
  assert.equal(normalizeIp(" 1.2.3.4:5678 "), "1.2.3.4");
  assert.equal(normalizeIp("[2001:DB8::1]:443"), "2001:db8::1");
  assert.equal(normalizeIp("::ffff:10.1.2.3"), "10.1.2.3");
  assert.equal(normalizeIp("010.0.0.1"), undefined);
  assert.equal(normalizeIp("not-an-ip"), undefined);
});

Deno.test("ClientIpResolver keys an IPv4-mapped peer and its plain form alike", () => {
  const resolver = new ClientIpResolver([]);
  assert.equal(resolver.resolve("::ffff:192.0.2.7", null), "192.0.2.7");
  const trusted = new ClientIpResolver(["10.0.0.0/8"]);
  assert.equal(trusted.resolve("::ffff:10.0.0.1", "198.51.100.4:31337"), "198.51.100.4");
});
