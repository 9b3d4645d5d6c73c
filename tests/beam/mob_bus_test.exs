# SPDX-License-Identifier: MIT
# ExUnit tests of the Elixir wrapper MobBus, under a real erl:
#   elixir -pa build/bridges/beam tests/beam/mob_bus_test.exs
ExUnit.start(trace: true)

defmodule MobBusTest do
  use ExUnit.Case

  setup do
    _ = MobBus.stop()
    db = Path.join(System.tmp_dir!(), "mob_bus_ex_#{System.unique_integer([:positive])}.db")
    :ok = MobBus.start(db: db, platform: :android, ack: :manual, delivery_info: true)

    on_exit(fn ->
      _ = MobBus.stop()
      for s <- ["", "-wal", "-shm"], do: File.rm(db <> s)
    end)

    {:ok, db: db}
  end

  test "a screen receives Mob's notification message and acks it" do
    :ok = MobBus.subscribe()
    :ok = MobBus.publish(:notification, id: "N1", title: "Hi", data: %{"screen" => "inbox"})
    assert_receive {:notification, %{id: "N1", title: "Hi", body: nil, data: %{screen: "inbox"},
                                     source: :push, presentation: :foreground, action: nil,
                                     redelivered: false}}
    assert :ok = MobBus.ack("N1")
    assert :ok = MobBus.sync()
  end

  test "device events and push tokens" do
    :ok = MobBus.subscribe(self(), [:mob_device, :push_token])
    :ok = MobBus.publish(:device, event: :will_enter_foreground)
    :ok = MobBus.publish(:push_token, token: "fcm-token")
    assert_receive {:mob_device, :will_enter_foreground}
    assert_receive {:push_token, :android, "fcm-token"}
  end

  test "an unacknowledged notification comes back after the subscriber crashes" do
    parent = self()
    pid = spawn(fn -> receive do m -> send(parent, {:got, m}) end end)
    :ok = MobBus.subscribe(pid)
    :ok = MobBus.publish(:notification, id: "N2")
    assert_receive {:got, {:notification, %{id: "N2"}}}
    Process.exit(pid, :kill)
    ref = Process.monitor(pid)
    assert_receive {:DOWN, ^ref, :process, ^pid, _}
    :ok = MobBus.subscribe()
    assert_receive {:notification, %{id: "N2", redelivered: true}}
  end

  test "key-value state", %{db: db} do
    :ok = MobBus.state_put("user", "42")
    assert {:ok, "42"} = MobBus.state_get("user")
    :ok = MobBus.stop()
    :ok = MobBus.start(db: db)
    assert {:ok, "42"} = MobBus.state_get("user")
    :ok = MobBus.state_delete("user")
    assert {:error, :not_found} = MobBus.state_get("user")
  end

  test "wrong arguments raise, run-time failures return errors" do
    assert_raise ArgumentError, fn -> MobBus.ack(42) end
    assert_raise ArgumentError, fn -> MobBus.complete("N1", :maybe) end
    assert_raise ArgumentError, fn -> MobBus.publish(:notification, title: "no id") end
    assert {:error, :already_started} = MobBus.start()
    :ok = MobBus.stop()
    assert {:error, :not_started} = MobBus.ack("N1")
  end
end
