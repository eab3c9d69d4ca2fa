import pytest

from botproxy.wire import protocol as p


@pytest.mark.parametrize(
    "method,path,name,conversation,activity",
    [
        ("POST", "/v3/conversations", p.CREATE_CONVERSATION, None, None),
        ("GET", "/v3/conversations", p.GET_CONVERSATIONS, None, None),
        ("POST", "/v3/conversations/c1/activities", p.SEND_TO_CONVERSATION, "c1", None),
        ("POST", "/v3/conversations/c1/activities/history", p.SEND_HISTORY, "c1", None),
        ("POST", "/v3/conversations/c1/activities/a1", p.REPLY_TO_ACTIVITY, "c1", "a1"),
        ("PUT", "/v3/conversations/c1/activities/a1", p.UPDATE_ACTIVITY, "c1", "a1"),
        ("DELETE", "/v3/conversations/c1/activities/a1", p.DELETE_ACTIVITY, "c1", "a1"),
        ("GET", "/v3/conversations/c1/members", p.GET_MEMBERS, "c1", None),
        ("GET", "/v3/conversations/c1/members/m1", p.GET_MEMBER, "c1", None),
        ("DELETE", "/v3/conversations/c1/members/m1", p.DELETE_MEMBER, "c1", None),
        ("GET", "/v3/conversations/c1/pagedmembers", p.GET_PAGED_MEMBERS, "c1", None),
        ("GET", "/v3/conversations/c1/activities/a1/members", p.GET_ACTIVITY_MEMBERS, "c1", "a1"),
        ("POST", "/v3/conversations/c1/attachments", p.UPLOAD_ATTACHMENT, "c1", None),
        ("GET", "/v3/attachments/x1", p.GET_ATTACHMENT_INFO, None, "x1"),
        ("GET", "/v3/attachments/x1/views/original", p.GET_ATTACHMENT, None, "x1"),
        ("GET", "/v3/teams/t1", p.TEAMS_GET_TEAM, "t1", None),
        ("GET", "/v3/teams/t1/conversations", p.TEAMS_GET_CHANNELS, "t1", None),
        ("GET", "/v1/meetings/m1", p.TEAMS_GET_MEETING, "m1", None),
        ("GET", "/v1/meetings/m1/participants/p1", p.TEAMS_GET_PARTICIPANT, "m1", None),
        ("POST", "/v1/meetings/m1/notification", p.TEAMS_MEETING_NOTIFICATION, "m1", None),
    ],
)
def test_every_connector_route_is_classified(method, path, name, conversation, activity):
    route = p.classify_connector(method, path)
    assert (route.name, route.conversation_id, route.activity_id) == (name, conversation, activity)


def test_history_is_not_mistaken_for_a_reply_to_an_activity_named_history():
    assert p.classify_connector("POST", "/v3/conversations/c/activities/history").name == p.SEND_HISTORY
    assert p.classify_connector("PUT", "/v3/conversations/c/activities/history").name == p.UPDATE_ACTIVITY


def test_suffix_after_a_service_url_path_prefix_and_ids_url_decoded():
    route = p.classify_connector(
        "POST", "/amer/v3/conversations/19%3Ax%40thread.skype%3Bmessageid%3D123/activities/1%3A2"
    )
    assert route.name == p.REPLY_TO_ACTIVITY
    assert route.conversation_id == "19:x@thread.skype;messageid=123"
    assert route.activity_id == "1:2"
    assert route.prefix == "/amer"


def test_gcc_prefix_and_trailing_slash():
    route = p.classify_connector("POST", "/gcc/v3/conversations/a%3A1/activities/")
    assert (route.name, route.conversation_id, route.prefix) == (p.SEND_TO_CONVERSATION, "a:1", "/gcc")


def test_unknown_connector_route_and_other_paths():
    assert p.classify_connector("PATCH", "/v3/conversations/c/activities/a").name == p.UNKNOWN_CONNECTOR
    assert p.classify_connector("GET", "/healthz").name == p.OTHER
    assert (
        p.classify_outbound("POST", "login.microsoftonline.com", "/botframework.com/oauth2/v2.0/token").name
        == p.AUTH
    )
    assert (
        p.classify_outbound("GET", "login.botframework.com", "/v1/.well-known/openidconfiguration").name
        == p.AUTH
    )


def test_parse_json_tolerates_bom_and_rejects_garbage():
    assert p.parse_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    assert p.parse_json(b"") is None
    with pytest.raises(p.BodyError):
        p.parse_json(b"{not json")
    with pytest.raises(p.BodyError):
        p.parse_json(b"\xff\xfe")


def test_activities_in_bodies():
    route = p.classify_connector("POST", "/v3/conversations/c/activities/history")
    assert p.request_activities(route, {"activities": [{"type": "message"}, "junk", {"type": "typing"}]}) == [
        {"type": "message"},
        {"type": "typing"},
    ]
    create = p.classify_connector("POST", "/v3/conversations")
    assert p.request_activities(create, {"members": [], "activity": {"type": "message"}}) == [
        {"type": "message"}
    ]
    assert p.request_activities(create, {"members": []}) == []
    send = p.classify_connector("POST", "/v3/conversations/c/activities")
    assert p.request_activities(send, ["not", "a", "dict"]) == []


def test_response_activities_expected_replies_and_invoke():
    expected = p.inbound_response_activities({"type": "message"}, 200, {"activities": [{"type": "message"}]})
    assert expected == [{"type": "message"}]
    invoke = p.inbound_response_activities({"type": "invoke"}, 200, {"echo": 1})
    assert invoke == [{"type": "invokeResponse", "value": {"status": 200, "body": {"echo": 1}}}]
    assert p.inbound_response_activities({"type": "message"}, 201, None) == []


def test_error_codes_standard_and_lenient_teams_shape():
    assert p.error_code({"error": {"code": "ConversationNotFound", "message": "x"}}) == "ConversationNotFound"
    assert p.error_code({"errorCode": 209, "message": '{"subCode":"MessageWritesBlocked"}'}) == "209"
    assert p.error_code("nope") is None


@pytest.mark.parametrize(
    "method,path,name,conversation",
    [
        ("POST", "/v3/directline/tokens/generate", p.DL_GENERATE_TOKEN, None),
        ("POST", "/v3/directline/tokens/refresh", p.DL_REFRESH_TOKEN, None),
        ("POST", "/v3/directline/conversations", p.DL_START_CONVERSATION, None),
        ("GET", "/v3/directline/conversations/abc", p.DL_RECONNECT, "abc"),
        ("GET", "/v3/directline/conversations/abc/activities", p.DL_GET_ACTIVITIES, "abc"),
        ("POST", "/v3/directline/conversations/abc/activities", p.DL_POST_ACTIVITY, "abc"),
        ("POST", "/v3/directline/conversations/abc/upload", p.DL_UPLOAD, "abc"),
        ("GET", "/v3/directline/session/getsessionid", p.DL_SESSION_ID, None),
        ("GET", "/v3/directline/conversations/abc/stream", p.DL_STREAM, "abc"),
        ("POST", "/api/tokens/conversation", p.DL1_GENERATE_TOKEN, None),
        ("GET", "/api/tokens/abc/renew", p.DL1_RENEW_TOKEN, "abc"),
        ("POST", "/api/tokens/abc/renew", p.DL1_RENEW_TOKEN, "abc"),
        ("GET", "/api/tokens", p.DL1_GET_TOKEN, None),
        ("POST", "/api/conversations", p.DL1_START_CONVERSATION, None),
        ("GET", "/api/conversations/abc/messages", p.DL1_GET_MESSAGES, "abc"),
        ("POST", "/api/conversations/abc/messages", p.DL1_POST_MESSAGE, "abc"),
        ("POST", "/api/conversations/abc/upload", p.DL1_UPLOAD, "abc"),
        ("DELETE", "/v3/directline/conversations/abc", p.DL_UNKNOWN, None),
    ],
)
def test_every_direct_line_route_is_classified(method, path, name, conversation):
    route = p.classify_directline(method, path)
    assert (route.name, route.conversation_id) == (name, conversation)
    assert route.is_directline and not route.is_connector


def test_direct_line_ids_decoded_behind_a_prefix():
    route = p.classify_directline("POST", "/europe/v3/directline/conversations/a%7Cb/activities")
    assert (route.name, route.conversation_id, route.prefix) == (p.DL_POST_ACTIVITY, "a|b", "/europe")


def test_direct_line_bodies():
    post = p.classify_directline("POST", "/v3/directline/conversations/c/activities")
    assert p.dl_request_activities(post, {"type": "message"}) == [{"type": "message"}]
    assert len(p.dl_request_activities(post, [{"type": "message"}, {"type": "typing"}])) == 2
    acts, mark = p.dl_delivered(p.DL_GET_ACTIVITIES, {"activities": [{"id": "c|1"}], "watermark": "1"})
    assert acts == [{"id": "c|1"}] and mark == "1"
    assert p.dl_delivered(p.DL_STREAM, {"activities": [], "watermark": None}) == ([], None)
    msgs, mark = p.dl_delivered(p.DL1_GET_MESSAGES, {"messages": [
        {"id": "c|0", "conversationId": "c", "from": "user1", "text": "hi", "images": ["/img.png"]}], "watermark": 7})
    assert mark == "7"
    assert msgs[0]["from"] == {"id": "user1"} and msgs[0]["conversation"] == {"id": "c"}
    assert msgs[0]["attachments"] == [{"contentType": "image", "contentUrl": "/img.png"}]
