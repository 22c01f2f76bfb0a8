// How UCX moves a validated write's payload given as pieces (docs/clients.md, "Zero copy"): two
// processes (fork) on loopback, an active-message handler that lands rendezvous payloads with
// ucp_am_recv_data_nbx as the storage node does, 16 messages in flight. Each message is
// `pieces` × (100 B of framing + `value` B of value), sent one of four ways:
//   0 contiguous (already one buffer)   1 copy into one buffer, then contiguous (pmq's copy)
//   2 one message, UCX iov datatype     3 one message per piece (pmq's zero copy)
// Prints MB/s. Checks nothing but that the receiver got every message. Build and run:
//   gcc -O2 -o /tmp/ucx-iov-probe tools/ucx-iov-probe.c -lucp -lucs
//   UCX_TLS=sm,tcp UCX_NET_DEVICES=lo /tmp/ucx-iov-probe <value bytes> <pieces> <mode> <count>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

enum { kFraming = 100, kInFlight = 16, kAmId = 1 };

static ucp_context_h context;
static ucp_worker_h worker;
static ucp_ep_h ep;
static uint8_t* landing;
static long received;
static int in_flight;

static void landed(void* request, ucs_status_t status, size_t length, void* user) {
  (void)length; (void)user;
  if (status != UCS_OK) printf("landing failed: %s\n", ucs_status_string(status));
  received += 1;
  ucp_request_free(request);
}

static ucs_status_t on_am(void* arg, const void* header, size_t header_bytes, void* data,
                          size_t length, const ucp_am_recv_param_t* param) {
  (void)arg; (void)header; (void)header_bytes;
  if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) == 0) {
    memcpy(landing, data, length);  // eager: one copy, as the storage node does
    received += 1;
    return UCS_OK;
  }
  ucp_request_param_t recv = {0};
  recv.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK;
  recv.cb.recv_am = landed;
  void* request = ucp_am_recv_data_nbx(worker, data, landing, length, &recv);
  if (request == NULL) received += 1;
  return UCS_INPROGRESS;
}

static void on_connection(ucp_conn_request_h request, void* arg) {
  (void)arg;
  ucp_ep_params_t params = {0};
  params.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST;
  params.conn_request = request;
  ucp_ep_create(worker, &params, &ep);
}

static void sent(void* request, ucs_status_t status, void* user) {
  (void)user;
  if (status != UCS_OK) printf("send failed: %s\n", ucs_status_string(status));
  in_flight -= 1;
  ucp_request_free(request);
}

static void open_worker(void) {
  ucp_params_t params = {0};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_AM;
  ucp_config_t* config;
  ucp_config_read(NULL, NULL, &config);
  ucp_init(&params, config, &context);
  ucp_config_release(config);
  ucp_worker_params_t worker_params = {0};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;
  ucp_worker_create(context, &worker_params, &worker);
}

static void send_one(const void* buffer, size_t count, int iov) {
  static char header[56];
  ucp_request_param_t param = {0};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_FLAGS;
  param.cb.send = sent;
  param.flags = UCP_AM_SEND_FLAG_REPLY;
  if (iov) {
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_DATATYPE;
    param.datatype = ucp_dt_make_iov();
  }
  in_flight += 1;
  void* request = ucp_am_send_nbx(ep, kAmId, header, sizeof header, buffer, count, &param);
  if (request == NULL) in_flight -= 1;
  if (UCS_PTR_IS_ERR(request)) {
    printf("send: %s\n", ucs_status_string(UCS_PTR_STATUS(request)));
    exit(1);
  }
}

int main(int argc, char** argv) {
  if (argc != 5) return 2;
  size_t value = strtoul(argv[1], NULL, 10);
  int pieces = atoi(argv[2]), mode = atoi(argv[3]), count = atoi(argv[4]);
  size_t total = (size_t)pieces * (kFraming + value);
  long messages = (long)count * (mode == 3 ? 2 * pieces : 1);
  struct sockaddr_in address = {0};
  address.sin_family = AF_INET;
  address.sin_port = htons(20000 + getpid() % 20000);
  address.sin_addr.s_addr = inet_addr("127.0.0.1");
  pid_t child = fork();
  open_worker();
  if (child == 0) {  // the storage side
    landing = malloc(total);
    ucp_am_handler_param_t handler = {0};
    handler.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                         UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
    handler.id = kAmId;
    handler.cb = on_am;
    handler.flags = UCP_AM_FLAG_WHOLE_MSG;
    ucp_worker_set_am_recv_handler(worker, &handler);
    ucp_listener_params_t listen = {0};
    listen.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
    listen.sockaddr.addr = (struct sockaddr*)&address;
    listen.sockaddr.addrlen = sizeof address;
    listen.conn_handler.cb = on_connection;
    ucp_listener_h listener;
    ucp_listener_create(worker, &listen, &listener);
    while (received < messages) ucp_worker_progress(worker);
    for (int i = 0; i < 200000; i += 1) ucp_worker_progress(worker);  // let the acks go out
    return 0;
  }
  sleep(1);
  ucp_ep_params_t params = {0};
  params.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR;
  params.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
  params.sockaddr.addr = (struct sockaddr*)&address;
  params.sockaddr.addrlen = sizeof address;
  ucp_ep_create(worker, &params, &ep);
  uint8_t* contiguous = malloc(total);
  uint8_t* framing = malloc((size_t)pieces * kFraming);
  uint8_t** values = malloc(sizeof(uint8_t*) * pieces);
  ucp_dt_iov_t* iov = malloc(sizeof(ucp_dt_iov_t) * 2 * pieces);
  for (int i = 0; i < pieces; i += 1) {
    values[i] = malloc(value);
    memset(values[i], i + 1, value);
    iov[2 * i] = (ucp_dt_iov_t){framing + (size_t)i * kFraming, kFraming};
    iov[2 * i + 1] = (ucp_dt_iov_t){values[i], value};
  }
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (int n = 0; n < count; n += 1) {
    while (in_flight >= kInFlight) ucp_worker_progress(worker);
    if (mode == 2) {
      send_one(iov, 2 * (size_t)pieces, 1);
      continue;
    }
    if (mode == 3) {
      for (int i = 0; i < 2 * pieces; i += 1) send_one(iov[i].buffer, iov[i].length, 0);
      continue;
    }
    if (mode == 1) {
      size_t at = 0;
      for (int i = 0; i < 2 * pieces; i += 1) {
        memcpy(contiguous + at, iov[i].buffer, iov[i].length);
        at += iov[i].length;
      }
    }
    send_one(contiguous, total, 0);
  }
  while (in_flight > 0) ucp_worker_progress(worker);
  clock_gettime(CLOCK_MONOTONIC, &end);
  double seconds = (double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) * 1e-9;
  printf("mode %d, %d x %zu B: %.0f MB/s\n", mode, pieces, value,
         (double)total * count / seconds / 1e6);
  for (int i = 0; i < 300000; i += 1) ucp_worker_progress(worker);
  int status;
  waitpid(child, &status, 0);
  return 0;
}
