/*
 * ftclient: a headless liblinphone 5.1 client for the end-to-end tests of
 * file transfer (RCS "file transfer via HTTP"): it sends a file as Linphone's
 * apps do (upload to file_transfer_server_url, then the pointer in a MESSAGE)
 * or waits for one and downloads it. Built by the tests against Debian's
 * liblinphone-dev (scripts/install-test-deps.sh installs it).
 *
 *   ftclient CONFIG.rc send    SIP_URI FILE     -> exit 0 iff Delivered/DeliveredToUser/Displayed
 *   ftclient CONFIG.rc receive OUTDIR           -> exit 0 on FileTransferDone (or a text message)
 *
 * Env: FT_TIMEOUT (seconds, default 30), FT_TYPE (send: "type/subtype",
 *      default application/octet-stream), FT_ROOT_CA (PEM file for HTTPS/TLS),
 *      FT_DEBUG=1 (liblinphone debug logs on stderr).
 * The rc file carries [sip] ports, [proxy_0], [auth_info_0], [storage] uri and
 * [misc] file_transfer_server_url, or [misc] config-uri: the remote
 * provisioning document to fetch at start, which names it.
 */
#define _GNU_SOURCE
#include <linphone/core.h>
#include <linphone/logging.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libgen.h>
#include <time.h>
#include <sys/stat.h>

static LinphoneChatMessageState g_state = LinphoneChatMessageStateIdle;
static int g_done = 0, g_ok = 0;
static const char *g_mode, *g_outdir;
static LinphoneChatMessage *g_rx; /* message being downloaded */
static char g_outpath[4096];
static FILE *g_out; /* real stdout: results only; liblinphone logs (which go to fd 1) are moved to stderr */

static double now(void) {
	struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void msg_state_changed(LinphoneChatMessage *msg, LinphoneChatMessageState st) {
	g_state = st;
	fprintf(stderr, "[ftclient] message state: %s\n", linphone_chat_message_state_to_string(st));
	if (strcmp(g_mode, "send") == 0) {
		switch (st) {
		case LinphoneChatMessageStateDelivered:
		case LinphoneChatMessageStateDeliveredToUser:
		case LinphoneChatMessageStateDisplayed: g_done = 1; g_ok = 1; break;
		case LinphoneChatMessageStateNotDelivered:
		case LinphoneChatMessageStateFileTransferError: g_done = 1; g_ok = 0; break;
		default: break;
		}
	} else {
		if (st == LinphoneChatMessageStateFileTransferDone) { g_done = 1; g_ok = 1; }
		else if (st == LinphoneChatMessageStateFileTransferError ||
		         st == LinphoneChatMessageStateNotDelivered) { g_done = 1; g_ok = 0; }
	}
	(void)msg;
}

static void progress(LinphoneChatMessage *msg, LinphoneContent *c, size_t off, size_t total) {
	if (off == total) fprintf(stderr, "[ftclient] progress %zu/%zu\n", off, total);
	(void)msg; (void)c;
}

static LinphoneChatMessageCbs *make_msg_cbs(void) {
	LinphoneChatMessageCbs *cbs = linphone_factory_create_chat_message_cbs(linphone_factory_get());
	linphone_chat_message_cbs_set_msg_state_changed(cbs, msg_state_changed);
	linphone_chat_message_cbs_set_file_transfer_progress_indication(cbs, progress);
	return cbs;
}

static void message_received(LinphoneCore *lc, LinphoneChatRoom *room, LinphoneChatMessage *msg) {
	(void)lc; (void)room;
	if (strcmp(g_mode, "receive") != 0 || g_rx) return;
	const char *ct = linphone_chat_message_get_content_type(msg);
	fprintf(g_out, "content-type: %s\n", ct ? ct : "(null)");
	LinphoneContent *ft = NULL;
	for (const bctbx_list_t *it = linphone_chat_message_get_contents(msg); it; it = it->next) {
		LinphoneContent *c = (LinphoneContent *)it->data;
		if (linphone_content_is_file_transfer(c)) { ft = c; break; }
	}
	if (!ft) {
		const char *txt = linphone_chat_message_get_utf8_text(msg);
		fprintf(g_out, "text: %s\n", txt ? txt : "(null)");
		fflush(g_out);
		g_done = 1; g_ok = 1;
		return;
	}
	const char *name = linphone_content_get_name(ft);
	fprintf(g_out, "file-name: %s\nfile-size: %zu\n", name ? name : "(null)", linphone_content_get_file_size(ft));
	char *base = strdup(name && *name ? name : "download.bin");
	snprintf(g_outpath, sizeof g_outpath, "%s/%s", g_outdir, basename(base));
	free(base);
	linphone_content_set_file_path(ft, g_outpath);
	g_rx = linphone_chat_message_ref(msg);
	LinphoneChatMessageCbs *cbs = make_msg_cbs();
	linphone_chat_message_add_callbacks(msg, cbs);
	linphone_chat_message_cbs_unref(cbs);
	if (!linphone_chat_message_download_content(msg, ft)) {
		fprintf(stderr, "[ftclient] download_content refused\n");
		g_done = 1; g_ok = 0;
	}
	fflush(g_out);
}

static void usage(const char *p) {
	fprintf(stderr, "usage: %s CONFIG.rc send SIP_URI FILE\n       %s CONFIG.rc receive OUTDIR\n", p, p);
	exit(2);
}

int main(int argc, char **argv) {
	if (argc < 4) usage(argv[0]);
	const char *cfg = argv[1];
	g_mode = argv[2];
	int is_send = strcmp(g_mode, "send") == 0;
	if (is_send ? argc != 5 : (strcmp(g_mode, "receive") != 0 || argc != 4)) usage(argv[0]);
	if (!is_send) g_outdir = argv[3];
	g_out = fdopen(dup(1), "w");
	dup2(2, 1);
	double timeout = getenv("FT_TIMEOUT") ? atof(getenv("FT_TIMEOUT")) : 30.0;

	linphone_logging_service_set_log_level(linphone_logging_service_get(),
		getenv("FT_DEBUG") ? LinphoneLogLevelDebug : LinphoneLogLevelWarning);

	LinphoneFactory *f = linphone_factory_get();
	char *cfgdup = strdup(cfg);
	char dir[4096]; /* keep all state next to the rc file (trailing '/' needed) */
	snprintf(dir, sizeof dir, "%s/", dirname(cfgdup));
	linphone_factory_set_data_dir(f, dir);
	linphone_factory_set_config_dir(f, dir);
	LinphoneCore *lc = linphone_factory_create_core_3(f, cfg, NULL, NULL);
	if (!lc) { fprintf(stderr, "cannot create core\n"); return 1; }

	LinphoneCoreCbs *ccbs = linphone_factory_create_core_cbs(f);
	linphone_core_cbs_set_message_received(ccbs, message_received);
	linphone_core_add_callbacks(lc, ccbs);
	linphone_core_cbs_unref(ccbs);

	linphone_core_set_use_files(lc, TRUE); /* no sound card */
	linphone_core_enable_video_capture(lc, FALSE);
	linphone_core_enable_video_display(lc, FALSE);
	if (getenv("FT_ROOT_CA")) linphone_core_set_root_ca(lc, getenv("FT_ROOT_CA"));

	const char *ftu = linphone_config_get_string(linphone_core_get_config(lc), "misc", "file_transfer_server_url", NULL);
	if (ftu) linphone_core_set_file_transfer_server(lc, ftu);
	if (linphone_core_start(lc) != 0) { fprintf(stderr, "core start failed\n"); return 1; }

	/* with [misc] config-uri, the core first fetches and applies the remote
	 * provisioning document (GlobalConfiguring), then reloads its accounts:
	 * wait until it is on before taking the account */
	double t0 = now();
	while (linphone_core_get_global_state(lc) != LinphoneGlobalOn && now() - t0 < 10) {
		linphone_core_iterate(lc);
		usleep(20000);
	}
	fprintf(stderr, "[ftclient] core: %s\n", linphone_global_state_to_string(linphone_core_get_global_state(lc)));

	/* wait for registration (if the account registers) */
	t0 = now();
	LinphoneAccount *acc = linphone_core_get_default_account(lc);
	if (acc && linphone_account_params_get_register_enabled(linphone_account_get_params(acc))) {
		while (now() - t0 < 10) {
			linphone_core_iterate(lc);
			LinphoneRegistrationState rs = linphone_account_get_state(acc);
			if (rs == LinphoneRegistrationOk || rs == LinphoneRegistrationFailed) break;
			usleep(20000);
		}
		fprintf(stderr, "[ftclient] registration: %s\n",
			linphone_registration_state_to_string(linphone_account_get_state(acc)));
	}

	LinphoneChatMessage *msg = NULL;
	if (is_send) {
		const char *path = argv[4];
		struct stat sb;
		if (stat(path, &sb) != 0) { perror(path); return 1; }
		char *type = strdup(getenv("FT_TYPE") ? getenv("FT_TYPE") : "application/octet-stream");
		char *slash = strchr(type, '/');
		if (slash) *slash++ = 0;
		char *pdup = strdup(path);
		LinphoneContent *c = linphone_core_create_content(lc);
		linphone_content_set_type(c, type);
		linphone_content_set_subtype(c, slash ? slash : "octet-stream");
		linphone_content_set_name(c, basename(pdup));
		linphone_content_set_size(c, (size_t)sb.st_size);
		linphone_content_set_file_path(c, path);

		LinphoneChatRoomParams *rp = linphone_core_create_default_chat_room_params(lc);
		linphone_chat_room_params_set_backend(rp, LinphoneChatRoomBackendBasic);
		linphone_chat_room_params_enable_encryption(rp, FALSE);
		linphone_chat_room_params_enable_group(rp, FALSE);
		LinphoneAddress *peer = linphone_factory_create_address(f, argv[3]);
		if (!peer) { fprintf(stderr, "bad uri %s\n", argv[3]); return 1; }
		bctbx_list_t *parts = bctbx_list_append(NULL, peer);
		LinphoneAddress *local = acc ? (LinphoneAddress *)linphone_account_params_get_identity_address(linphone_account_get_params(acc)) : NULL;
		LinphoneChatRoom *room = linphone_core_create_chat_room_6(lc, rp, local, parts);
		if (!room) { fprintf(stderr, "cannot create chat room\n"); return 1; }

		msg = linphone_chat_room_create_file_transfer_message(room, c);
		LinphoneChatMessageCbs *cbs = make_msg_cbs();
		linphone_chat_message_add_callbacks(msg, cbs);
		linphone_chat_message_cbs_unref(cbs);
		linphone_chat_message_send(msg);
		linphone_content_unref(c);
		free(type); free(pdup);
	}

	t0 = now();
	while (!g_done && now() - t0 < timeout) {
		linphone_core_iterate(lc);
		usleep(20000);
	}
	/* a few more iterations to flush 200 OK / IMDN */
	for (int i = 0; i < 10; i++) { linphone_core_iterate(lc); usleep(20000); }

	if (!g_done) fprintf(g_out, "TIMEOUT (last state %s)\n", linphone_chat_message_state_to_string(g_state));
	else if (is_send) fprintf(g_out, "%s\n", linphone_chat_message_state_to_string(g_state));
	else if (g_rx) fprintf(g_out, g_ok ? "saved: %s\n" : "download failed: %s\n", g_outpath);
	fflush(g_out);
	if (msg) linphone_chat_message_unref(msg);
	if (g_rx) linphone_chat_message_unref(g_rx);
	linphone_core_stop(lc);
	linphone_core_unref(lc);
	free(cfgdup);
	return (g_done && g_ok) ? 0 : 1;
}
