"""One failure, rendered for each reader: the log line, the metrics' count, a resource's status."""

from imagepuller.failures import FAILURE_MESSAGE_MAX, Failure, failure_summary

PULL = Failure("node-1", "quay.io/a:1", "a", "ErrImagePull", "not found", pod="p1")
NOT_CREATED = Failure("", "", "", "FailedCreate", "quota", pod="(not created)", times=4)


def test_a_pods_failure_logs_six_string_fields_in_the_documented_order():
    fields = PULL.log_fields()
    assert list(fields) == ["node", "pod", "container", "image", "reason", "message"]
    assert fields == {
        "node": "node-1",
        "pod": "p1",
        "container": "a",
        "image": "quay.io/a:1",
        "reason": "ErrImagePull",
        "message": "not found",
    }


def test_a_failure_events_counted_logs_its_times_as_a_string():
    fields = NOT_CREATED.log_fields()
    assert list(fields)[-1] == "times"
    assert fields["times"] == "4"
    assert all(isinstance(value, str) for value in fields.values())


def test_the_metrics_count_a_pods_failure_once_and_events_as_often_as_they_said():
    assert (PULL.count, NOT_CREATED.count) == (1, 4)


def test_a_status_entry_has_node_image_reason_and_a_short_message():
    long = Failure("node-1", "quay.io/a:1", "a", "ErrImagePull", "x" * 5000, pod="p1", times=2)
    assert long.status_entry() == {
        "node": "node-1",
        "image": "quay.io/a:1",
        "reason": "ErrImagePull",
        "message": "x" * FAILURE_MESSAGE_MAX,
    }


def test_a_summary_names_node_image_and_reason_of_the_first_few_and_counts_the_rest():
    assert failure_summary([PULL, NOT_CREATED]) == (
        "failing: node-1 quay.io/a:1: ErrImagePull; ? : FailedCreate"
    )
    assert failure_summary([PULL] * 7).endswith("; node-1 quay.io/a:1: ErrImagePull and 2 more")
    assert failure_summary([]).startswith("no failure reported yet")
