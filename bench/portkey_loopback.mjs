// Preloaded into the Portkey gateway (`node --import`): its server listens on every interface
// and has no option for the address, while the benchmark keeps all traffic on 127.0.0.1.
// This binds every TCP listener the process opens to 127.0.0.1 instead.
import net from "node:net";

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "object" && args[0] !== null) {
    args[0] = { ...args[0], host: "127.0.0.1" };
  } else if (typeof args[0] === "number" || typeof args[0] === "string") {
    // listen(port[, host][, backlog][, callback]): replace or insert the host.
    if (typeof args[1] === "string" || args[1] === undefined) args[1] = "127.0.0.1";
    else args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
