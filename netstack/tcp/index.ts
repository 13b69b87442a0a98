/**
 * TCP for pod namespaces (RFC 9293 subset; see connection.ts for what is in
 * and what is not), plus the socket API applications use.
 */
export { DEFAULT_TCP_CONFIG, type TcpConfig } from './config.ts';
export { TcpConnection, type TcpState, type ConnectionStats } from './connection.ts';
export { SocketError, TcpError, errnoText, type TcpErrorCode } from './errors.ts';
export { TcpServer, TcpSocket, type TcpSocketEvents } from './socket.ts';
export { TcpStack, type ConnectOptions, type ListenOptions, type TcpCounters, type TcpStackOptions } from './stack.ts';
export { UdpSocket, type UdpRemoteInfo } from './udp-socket.ts';
